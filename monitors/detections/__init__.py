"""The detection catalogue. Each module reads top to bottom: what, why, runbook, KQL, logic, cases."""

from collections.abc import Collection

from monitors.detections import (
    break_glass_use,
    guest_arm_write,
    mfa_blocked_automation,
    policy_mfa_audit,
    ropc_sign_in,
    user_arm_write,
)
from monitors.detections.base import Detection

DETECTIONS: tuple[Detection, ...] = (
    user_arm_write.DETECTION,
    break_glass_use.DETECTION,
    mfa_blocked_automation.DETECTION,
    ropc_sign_in.DETECTION,
    guest_arm_write.DETECTION,
    policy_mfa_audit.DETECTION,
)


def enabled(disabled: Collection[str]) -> tuple[Detection, ...]:
    """The catalogue minus what DISABLED_DETECTIONS switched off (settings validates the ids)."""
    return tuple(d for d in DETECTIONS if d.id not in disabled)
