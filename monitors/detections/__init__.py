"""The detection catalogue. Each module reads top to bottom: what, why, runbook, KQL, logic, cases."""

from monitors.detections import break_glass_use, user_arm_write
from monitors.detections.base import Detection

DETECTIONS: tuple[Detection, ...] = (user_arm_write.DETECTION, break_glass_use.DETECTION)
