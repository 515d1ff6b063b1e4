"""Mandatory-MFA and break-glass monitor: detections over Entra and Activity logs."""
