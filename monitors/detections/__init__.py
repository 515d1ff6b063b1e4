"""The detection catalogue. Each module reads top to bottom: what, why, runbook, KQL, logic, cases."""

from collections.abc import Collection

from monitors.detections import (
    break_glass_use,
    break_glass_weak_method,
    source_silent,
    user_arm_write,
    user_service_account,
)
from monitors.detections.base import Detection

DETECTIONS: tuple[Detection, ...] = (
    user_arm_write.DETECTION,
    break_glass_use.DETECTION,
    # --- issue 8, branch det2
    source_silent.DETECTION,
    break_glass_weak_method.DETECTION,
    user_service_account.DETECTION,
)


def enabled(disabled: Collection[str]) -> tuple[Detection, ...]:
    """The catalogue minus what DISABLED_DETECTIONS switched off (settings validates the ids)."""
    return tuple(d for d in DETECTIONS if d.id not in disabled)
