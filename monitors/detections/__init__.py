"""The detection catalogue. Each module reads top to bottom: what, why, runbook, KQL, logic, cases."""

from collections.abc import Collection

from monitors.detections import (
    break_glass_account_changed,
    break_glass_use,
    break_glass_weak_method,
    guest_arm_write,
    mfa_blocked_automation,
    policy_mfa_audit,
    ropc_sign_in,
    source_silent,
    user_arm_write,
    user_service_account,
)
from monitors.detections.base import Detection

DETECTIONS: tuple[Detection, ...] = (
    user_arm_write.DETECTION,
    break_glass_use.DETECTION,
    break_glass_account_changed.DETECTION,
    source_silent.DETECTION,
    break_glass_weak_method.DETECTION,
    mfa_blocked_automation.DETECTION,
    ropc_sign_in.DETECTION,
    guest_arm_write.DETECTION,
    policy_mfa_audit.DETECTION,
    user_service_account.DETECTION,
)


def enabled(disabled: Collection[str]) -> tuple[Detection, ...]:
    """The catalogue minus what DISABLED_DETECTIONS switched off (settings validates the ids)."""
    return tuple(d for d in DETECTIONS if d.id not in disabled)
