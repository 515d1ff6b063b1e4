"""ropc-sign-in: a user account signs in with the password grant (ROPC).

Why: the resource owner password credentials grant sends a user's password straight to Entra
and gets a token back with no prompt. It can never satisfy MFA, so under mandatory MFA every ARM
write it is used for fails, and Microsoft has deprecated it in the Azure SDKs
(`UsernamePasswordCredential`). Whoever uses it keeps a user's password in a script, a pipeline
variable or a config file: automation hiding in a user object, with a credential that can leak.

What counts: ROPC sign-ins whose password was accepted (success, MFA required, a Conditional
Access block after the password, an expired password, a disabled account: every result in
entra.FIRST_FACTOR_VERIFIED); a wrong password is guessing, not the account's automation.

Severity: high when a token for ARM was asked for (it breaks, or is about to); medium otherwise.
Dedupe: once per user account and client app (a baseline keyed "user|app"): a second script
using another tool with the same password is a new finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    distinct,
    new_groups,
    object_id,
    principal_facts,
    summarize_list,
    text,
    when,
)
from monitors.detections.entra import FIRST_FACTOR_VERIFIED
from monitors.model import EventLine, Finding, Principal, Severity, baseline_key

ID = "ropc-sign-in"

RUNBOOK = (
    "Find the script or tool: the app, user agent and IP addresses below show what sends this "
    "account's password (a PowerShell script with a PSCredential, az login with a password, an SDK "
    "using UsernamePasswordCredential, a legacy integration).",
    "Replace the password with a workload identity: a managed identity for code on Azure, federated "
    "credentials (OIDC) for CI/CD, or a service principal with a certificate.",
    "Then rotate the account's password (it is stored somewhere in plain text), remove its Azure "
    "role assignments, and block legacy and password-grant sign-ins for it with Conditional Access.",
    "A person using a tool that only offers the password grant: have them use the tool's interactive "
    "or device-code sign-in with MFA instead.",
    "Migration under way? Record a waiver with an owner and an expiry.",
)

FALSE_POSITIVES = (
    "An old integration that must use the password grant and talks only to a resource outside "
    "mandatory MFA (e.g. a mailbox over Exchange): still a stored password; waive it with an owner "
    "and a date rather than ignore it.",
    "Conditional Access blocks the sign-in (53000-53003) after accepting the password, or the password "
    "has expired (50055) or the account is disabled (50057): the script is broken already, but it "
    "still holds the account's password.",
)

ARM_RESOURCE = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
SOURCES = {"SigninLogs": "sign-in", "AADNonInteractiveUserSignInLogs": "non-interactive sign-in"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RopcSignIn:
    event_id: str
    source: str
    time: datetime
    principal: Principal
    user_type: str | None
    app_id: str | None
    app: str | None
    resource: str | None
    resource_id: str | None
    ip_address: str | None
    user_agent: str | None
    result: str

    @property
    def to_arm(self) -> bool:
        return self.resource_id == ARM_RESOURCE

    @property
    def app_label(self) -> str:
        return self.app or self.app_id or "unknown app"

    @property
    def subject(self) -> str:
        """The client app, for the baseline: its id (stable), else its name."""
        return (self.app_id or self.app or "unknown app").lower()

    @property
    def baseline_key(self) -> str:
        return baseline_key(self.principal, self.subject)


def parse(row: Row) -> RopcSignIn:
    source = text(row, "Source", required=True)
    if source not in SOURCES:
        raise RowError(f"unexpected source {source!r}")
    upn = text(row, "UserPrincipalName", limit=256)
    user_id = object_id(row, "UserId")
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    return RopcSignIn(
        event_id=text(row, "EventId", required=True, limit=64) or "",
        source=source,
        time=when(row, "TimeGenerated"),
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        user_type=text(row, "UserType", limit=32),
        app_id=text(row, "AppId", limit=64),
        app=text(row, "App", limit=128),
        resource=text(row, "Resource", limit=128),
        resource_id=(text(row, "ResourceId", limit=64) or "").lower() or None,
        ip_address=text(row, "IPAddress", limit=64),
        user_agent=text(row, "UserAgent", limit=256),
        result=text(row, "ResultType", required=True, limit=16) or "",
    )


def evaluate(sign_ins: Sequence[RopcSignIn], context: Context) -> list[Finding]:
    return [
        _finding(group) for group in new_groups(sign_ins, lambda s: s.baseline_key, context.known_principals)
    ]


def _finding(sign_ins: list[RopcSignIn]) -> Finding:
    principal = next((s.principal for s in sign_ins if s.principal.user_id), sign_ins[0].principal)
    app = sign_ins[0]
    succeeded = sum(s.result == "0" for s in sign_ins)
    to_arm = sum(s.to_arm for s in sign_ins)
    user_type = next((s.user_type for s in sign_ins if s.user_type), "unknown")
    return Finding(
        detection=ID,
        severity=Severity.HIGH if to_arm else Severity.MEDIUM,
        principal=principal,
        headline=f"Password grant (ROPC) sign-in: {principal.label} with {app.app_label}",
        facts=(
            *principal_facts(principal, "User"),
            ("User type", user_type),
            ("App", f"{app.app_label} ({app.app_id})" if app.app_id and app.app else app.app_label),
            ("Resources", summarize_list(distinct([s.resource or s.resource_id for s in sign_ins]))),
            ("Sign-ins", f"{len(sign_ins)}: {succeeded} succeeded, {len(sign_ins) - succeeded} refused"),
            ("Azure Resource Manager", f"{to_arm} token request(s): ARM writes need MFA" if to_arm else "no"),
            ("IP addresses", summarize_list(distinct([s.ip_address for s in sign_ins]))),
            ("User agents", summarize_list(distinct([s.user_agent for s in sign_ins]), shown=3)),
            ("MFA", "impossible: the password grant cannot perform MFA"),
            ("First", sign_ins[0].time.isoformat(timespec="seconds")),
            ("Last", sign_ins[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(s) for s in sign_ins),
        event_ids=tuple(s.event_id for s in sign_ins),
        first_time=sign_ins[0].time,
        last_time=sign_ins[-1].time,
        subject=app.subject,
    )


def _line(sign_in: RopcSignIn) -> EventLine:
    fields = [
        ("What", f"password grant {SOURCES[sign_in.source]}"),
        ("Result", f"{sign_in.result}: {FIRST_FACTOR_VERIFIED.get(sign_in.result, 'refused')}"),
        ("App", sign_in.app_label),
        ("Resource", sign_in.resource or sign_in.resource_id or "unknown"),
        ("IP", sign_in.ip_address or "unknown"),
    ]
    if sign_in.user_agent:
        fields.append(("User agent", sign_in.user_agent))
    return EventLine(
        event_id=sign_in.event_id,
        time=sign_in.time,
        source=sign_in.source,
        fields=tuple(fields),
        flagged=sign_in.to_arm,
    )


# --- cases: raw sign-in rows (shapes of the exported fixtures), run through the KQL above

SVC_ID = "8c2d4e6f-1a3b-4c5d-8e7f-9a0b1c2d3e4f"
SVC_UPN = "svc-backup-005@contoso.com"
POWERSHELL = "1950a258-227b-4e31-a9cf-717495945fc2"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def sign_in_row(event_id: str, result: str = "0", protocol: str = "ropc", **extra: object) -> dict:
    """A password-grant sign-in as SigninLogs stores it (ROPC sign-ins are logged as interactive)."""
    return {
        "TimeGenerated": "2026-11-20T04:00:12Z",
        "Id": event_id,
        "UserId": SVC_ID,
        "UserPrincipalName": SVC_UPN,
        "UserType": "Member",
        "AppId": POWERSHELL,
        "AppDisplayName": "Microsoft Azure PowerShell",
        "ResourceIdentity": ARM_RESOURCE,
        "ResourceDisplayName": "Windows Azure Service Management API",
        "ResultType": result,
        "AuthenticationProtocol": protocol,
        "AuthenticationRequirement": "singleFactorAuthentication",
        "AuthenticationDetails": '[{"authenticationMethod":"Password","succeeded":true}]',
        "ClientAppUsed": "Mobile Apps and Desktop clients",
        "IPAddress": "52.169.23.8",
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.20348; en-US) PowerShell/7.4.5",
        "Status": {"errorCode": int(result)},
        "IsInteractive": True,
        **extra,
    }


CASES = (
    Case(
        name="a script with a stored password gets an ARM token",
        rows={"SigninLogs": [sign_in_row("r1"), sign_in_row("r2", "50076")]},
        findings=(Expect(principal=SVC_ID, event_ids=("r1", "r2")),),
    ),
    Case(
        name="password grant to Exchange in the non-interactive log fires too",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                sign_in_row(
                    "r3",
                    ResourceIdentity="00000002-0000-0ff1-ce00-000000000000",
                    ResourceDisplayName="Office 365 Exchange Online",
                    Status='{"errorCode":0}',
                    IsInteractive=False,
                )
            ]
        },
        findings=(Expect(principal=SVC_ID, event_ids=("r3",)),),
    ),
    Case(
        # Codes from Microsoft's Entra error-code reference (entra.FIRST_FACTOR_VERIFIED): each is
        # returned only after the password was checked, so the script holds the right one.
        name="refused after the password was accepted: device policy, unapproved app, expired, disabled",
        rows={
            "SigninLogs": [
                sign_in_row("r13", "53000"),
                sign_in_row("r14", "53002"),
                sign_in_row("r15", "50055"),
                sign_in_row("r16", "50057"),
            ]
        },
        findings=(Expect(principal=SVC_ID, event_ids=("r13", "r14", "r15", "r16")),),
    ),
    Case(
        name="a wrong password over ROPC is guessing, not the account's automation",
        rows={"SigninLogs": [sign_in_row("r4", "50126")]},
        findings=(),
    ),
    Case(
        name="ordinary and device-code sign-ins do not fire",
        rows={"SigninLogs": [sign_in_row("r5", protocol="none"), sign_in_row("r6", protocol="deviceCode")]},
        findings=(),
    ),
    Case(
        name="an account already alerted with this app does not fire again",
        rows={"SigninLogs": [sign_in_row("r7")]},
        findings=(),
        context=Context(known_principals=frozenset({f"{SVC_ID}|{POWERSHELL}"})),
    ),
    Case(
        name="the same account with a new app is new: one finding per app",
        rows={
            "SigninLogs": [
                sign_in_row("r8"),
                sign_in_row("r9", AppId=AZURE_CLI, AppDisplayName="Microsoft Azure CLI"),
                sign_in_row("r10", AppId=AZURE_CLI, AppDisplayName="Microsoft Azure CLI"),
            ]
        },
        findings=(Expect(principal=SVC_ID, event_ids=("r9", "r10")),),
        context=Context(known_principals=frozenset({f"{SVC_ID}|{POWERSHELL}"})),
    ),
    Case(
        name="two apps in one tick are two findings",
        rows={
            "SigninLogs": [
                sign_in_row("r11"),
                sign_in_row("r12", AppId=AZURE_CLI, AppDisplayName="Microsoft Azure CLI"),
            ]
        },
        findings=(Expect(principal=SVC_ID, event_ids=("r11",)), Expect(principal=SVC_ID, event_ids=("r12",))),
    ),
)

DETECTION = Detection(
    id=ID,
    title="User signs in with the password grant (ROPC)",
    severity=Severity.HIGH,
    mitre=("T1078.004", "T1552.001"),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="principal",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
    baseline_key=lambda sign_in: sign_in.baseline_key,
)
