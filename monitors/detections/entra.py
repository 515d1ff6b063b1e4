"""What Entra writes into sign-in results and tokens, as the rules read it: each list once.

The detections' KQL receives these lists as query parameters (`query_values`), the Python
rules and the synthetic tenant's answer key (devstack/tenant.py) import them, so a code added
here changes every reader at once.

Sources (Microsoft Learn):
- amr values: "Microsoft identity platform access tokens", claim `amr`
  (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference): `mfa`
  "multifactor authentication was used", `ngcmfa` "equivalent to mfa, used for provisioning of
  certain advanced credential types", `wiaormfa` "the user used Windows or an MFA credential".
- Result codes: "Microsoft Entra authentication and authorization error codes"
  (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
"""

from __future__ import annotations

import re
from datetime import timedelta

# amr values that satisfy MFA. In the Activity Log the claim is one comma-separated string
# (`http://schemas.microsoft.com/claims/authnmethodsreferences`, e.g. "rsa,mfa"); a value counts
# as a whole term, as KQL's `has_any` matches it: "ngcmfa" is MFA, "notmfa" would not be.
MFA_METHODS: tuple[str, ...] = ("mfa", "ngcmfa", "wiaormfa")

# The token request was refused because MFA is required: the password was right.
MFA_REQUIRED: dict[str, str] = {
    "50074": "strong authentication required",  # UserStrongAuthClientAuthNRequiredInterrupt
    "50076": "MFA required",  # UserStrongAuthClientAuthNRequired
    "50079": "MFA registration required",  # UserStrongAuthEnrollmentRequired
    "50072": "MFA enrolment required",  # UserStrongAuthEnrollmentRequiredInterrupt
}

# Every result after which Entra had accepted the password (the first factor): success, MFA
# required, and the refusals Entra only reaches once the password checked out.
FIRST_FACTOR_VERIFIED: dict[str, str] = {
    "0": "success",
    **{code: f"refused: {reason}" for code, reason in MFA_REQUIRED.items()},
    "500121": "refused: MFA denied or failed",  # AuthenticationFailedDuringStrongAuthRequest
    "53000": "blocked by Conditional Access: device not compliant",  # DeviceNotCompliant
    "53001": "blocked by Conditional Access: device not domain-joined",  # DeviceNotDomainJoined
    "53002": "blocked by Conditional Access: app not approved",  # ApplicationUsedIsNotAnApprovedApp
    "53003": "blocked by Conditional Access",  # BlockedByConditionalAccess
    "50055": "refused: password expired",  # InvalidPasswordExpiredPassword
    "50057": "refused: account disabled",  # UserDisabled
}

# A silent (non-interactive) token request refused with these asks a person to step up: the
# client (the portal, the CLI, VS Code) then prompts, and the person completes MFA interactively.
STEP_UP_RESULTS: tuple[str, ...] = ("50074", "50076")
# How soon the person's interactive MFA follows the refused refresh for it to count as the answer.
STEP_UP_WITHIN = timedelta(minutes=10)
# How long a tick waits before reading such a refusal, so that the answer has been ingested too:
# the step-up window plus the sign-in logs' ingestion latency (about 5 minutes at P99: Microsoft
# Learn, "Log data ingestion time in Azure Monitor").
STEP_UP_SETTLE = STEP_UP_WITHIN + timedelta(minutes=5)

_TERM = re.compile(r"[A-Za-z0-9]+")


def has_mfa(amr: str | None) -> bool:
    """Whether a comma-separated amr claim holds a value that satisfies MFA (case-insensitive)."""
    return any(term.lower() in MFA_METHODS for term in _TERM.findall(amr or ""))


def query_values() -> dict[str, object]:
    """The lists as KQL query parameters (`dynamic` string lists)."""
    return {
        "MfaMethods": MFA_METHODS,
        "MfaRequired": tuple(MFA_REQUIRED),
        "FirstFactorVerified": tuple(FIRST_FACTOR_VERIFIED),
        "StepUpResults": STEP_UP_RESULTS,
    }
