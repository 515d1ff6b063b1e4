"""How strong a sign-in's authentication was, and which emergency-access account it belongs to.

Shared by the break-glass detections: `break-glass-use` marks weak methods on every event,
`break-glass-weak-method` alerts on them. The methods come from `AuthenticationDetails`
(JSON text in both sign-in tables: an array of steps with `authenticationMethod` and
`succeeded`).
"""

from __future__ import annotations

import json
from typing import Literal

from monitors.model import Principal
from monitors.settings import BreakGlassAccounts

# Phishing-resistant methods Microsoft recommends for emergency access.
STRONG_METHODS = ("fido2", "passkey", "certificate", "x.509", "windows hello")
# A step satisfied by a claim in an earlier token says nothing about the method itself.
NEUTRAL_METHODS = ("previously satisfied",)
UNREADABLE = "unreadable authentication details"

Strength = Literal["strong", "neutral", "weak"]


def methods(details: str | None, *, succeeded_only: bool = False) -> tuple[str, ...]:
    """Methods of the authentication steps; malformed details cost the event its methods, not the event.

    `succeeded_only` keeps the steps that worked: a password step that succeeded proves the
    account has a working password, even when a later MFA step failed.
    """
    if not details:
        return ()
    try:
        steps = json.loads(details)
    except ValueError:
        return () if succeeded_only else (UNREADABLE,)
    if not isinstance(steps, list):
        return ()
    found = [
        str(s.get("authenticationMethod"))[:64]
        for s in steps
        if isinstance(s, dict) and (not succeeded_only or s.get("succeeded") is True)
    ]
    return tuple(dict.fromkeys(m for m in found if m and m != "None"))


def strength(method: str) -> Strength:
    lowered = method.lower()
    if any(s in lowered for s in STRONG_METHODS):
        return "strong"
    if any(s in lowered for s in NEUTRAL_METHODS):
        return "neutral"
    return "weak"


def weak(found: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m for m in found if strength(m) == "weak")


def account_key(principal: Principal, accounts: BreakGlassAccounts) -> str | None:
    """The configured account an event belongs to: object id first (UPNs can be renamed)."""
    if principal.user_id and principal.user_id in accounts.object_ids:
        return principal.user_id
    upn = (principal.user_principal_name or "").lower()
    if upn in accounts.upns:
        return upn
    return None
