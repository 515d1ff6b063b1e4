"""mfa-blocked-automation: automation running as a user account has been broken by mandatory MFA.

Why: from mandatory MFA phase 2, ARM refuses create/update/delete requests from a user token
without MFA. Automation signed in as a user (a refresh token cached on a build agent, a script
with a stored password) cannot answer an MFA prompt: its token requests for ARM fail with
50074/50076/50079/50072, or its writes are rejected. Something stopped working (a deployment, a
nightly job), and the only lasting fix is to move it to a workload identity; scripting around
MFA is the wrong fix.

What counts: a refused ARM token request from a client nobody sits at (the non-interactive log,
or the password grant in the interactive log), and ARM writes by a user rejected for lack of MFA.
A write is an operation whose name ends in /write (create, update) or /delete, what mandatory
MFA covers; a rejected action (/action: a POST such as listKeys) is not read.
An interactive sign-in that meets an MFA prompt is a person, not automation, and is left out.
So is a silent refresh refused with 50074/50076 (the portal, the CLI, VS Code renewing a person's
token) that the same user answers within minutes with an interactive sign-in that satisfies MFA:
that is a person stepping up. Such refusals are read a quarter of an hour late, so that the
answer has arrived (entra.STEP_UP_SETTLE).

Severity: high (an outage in progress, and a user account doing a workload's job).
Dedupe: once per user account (a baseline); every refusal in the tick is listed on that alert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from monitors.detections.base import (
    CLIENT_APPS,
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    client_app_name,
    distinct,
    new_groups,
    object_id,
    optional_when,
    principal_facts,
    summarize_list,
    text,
    when,
)
from monitors.detections.entra import MFA_REQUIRED, STEP_UP_RESULTS, STEP_UP_WITHIN
from monitors.model import EventLine, Finding, Principal, Severity

ID = "mfa-blocked-automation"

RUNBOOK = (
    "This automation has broken: find it. The tools, user agents and IP addresses below point to "
    "the machine or pipeline (a build agent, a VM running a scheduled script, a Terraform job).",
    "Migrate it to a workload identity: a managed identity for code running on Azure, federated "
    "credentials (OIDC) for CI/CD, or a service principal with a certificate. Grant that identity the "
    "roles the account had, at the narrowest scope.",
    "Then remove the user account's Azure role assignments and stored credentials, or disable the "
    "account if it exists only for this automation.",
    "Do not exclude the account from MFA or script an MFA prompt: mandatory MFA has no exclusions, "
    "and a workaround keeps a password-based identity with write access alive.",
    "Migration under way? Record a waiver with an owner and an expiry so the team knows who is on it.",
)

FALSE_POSITIVES = (
    "A person's CLI or PowerShell session whose cached token predates their MFA registration, who "
    "signs in again with MFA only later than entra.STEP_UP_WITHIN after the refused refresh. "
    "Confirm with the owner; nothing to migrate.",
    "A failed write whose status message merely mentions multi-factor authentication for another reason.",
)

ARM_RESOURCE = "797f4846-ba00-4fd7-ba43-dac1f8f63013"
MIGRATE = (
    "migrate this automation to a workload identity (managed identity, federated credentials "
    "or a service principal with a certificate)"
)
SOURCES = {
    "SigninLogs": "token request (password grant)",
    "AADNonInteractiveUserSignInLogs": "token request (non-interactive)",
    "AzureActivity": "ARM write rejected",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockedEvent:
    event_id: str
    source: str
    time: datetime
    principal: Principal
    app_id: str | None
    app: str | None
    ip_address: str | None
    user_agent: str | None
    protocol: str | None
    result: str
    detail: str | None
    operation: str | None
    stepped_up_at: datetime | None  # the user's next interactive sign-in that satisfied MFA

    @property
    def answered_by_person(self) -> bool:
        """A silent refresh refused for a step-up that the user answered interactively with MFA."""
        return (
            self.source == "AADNonInteractiveUserSignInLogs"
            and self.result in STEP_UP_RESULTS
            and self.stepped_up_at is not None
            and timedelta(0) <= self.stepped_up_at - self.time <= STEP_UP_WITHIN
        )


def parse(row: Row) -> BlockedEvent:
    source = text(row, "Source", required=True)
    if source not in SOURCES:
        raise RowError(f"unexpected source {source!r}")
    upn = text(row, "UserPrincipalName", limit=256)
    user_id = object_id(row, "UserId")
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    return BlockedEvent(
        event_id=text(row, "EventId", required=True, limit=64) or "",
        source=source,
        time=when(row, "TimeGenerated"),
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        app_id=text(row, "AppId", limit=64),
        app=text(row, "App", limit=128),
        ip_address=text(row, "IPAddress", limit=64),
        user_agent=text(row, "UserAgent", limit=256),
        protocol=text(row, "Protocol", limit=32),
        result=text(row, "Result", required=True, limit=64) or "",
        detail=text(row, "Detail", limit=4000),  # whole, so the ARM error JSON parses; cards bound it
        operation=text(row, "Operation", limit=200),
        stepped_up_at=optional_when(row, "SteppedUpAt"),
    )


def evaluate(events: Sequence[BlockedEvent], context: Context) -> list[Finding]:
    unanswered = [e for e in events if not e.answered_by_person]
    return [
        _finding(group)
        for group in new_groups(unanswered, lambda e: e.principal.key, context.known_principals)
    ]


def _tool(event: BlockedEvent) -> str:
    """The same name whichever log the event came from (Activity Log rows carry only the app id)."""
    if event.app_id and event.app_id.lower() in CLIENT_APPS:
        return client_app_name(event.app_id)
    if event.app:
        return f"{event.app} ({event.app_id})" if event.app_id else event.app
    return client_app_name(event.app_id) if event.app_id else "unknown"


def _status(detail: str | None, result: str, limit: int = 500) -> str:
    """'Forbidden: RequestDisallowedByPolicy: <message>' from '<statusCode> <statusMessage JSON>'.

    The row keeps the whole text so the JSON parses; what is shown is bounded (an alert holds up
    to 200 events, and history stores them all).
    """
    if not detail:
        return result
    shown = detail
    code, _, message = detail.partition(" ")
    try:
        error = json.loads(message).get("error", {})
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("code"):
        shown = ": ".join(str(p) for p in (code, error["code"], error.get("message")) if p)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _finding(events: list[BlockedEvent]) -> Finding:
    principal = next((e.principal for e in events if e.principal.user_id), events[0].principal)
    refused = [e for e in events if e.source != "AzureActivity"]
    rejected = len(events) - len(refused)
    codes = sorted({e.result for e in refused})
    ropc = any((e.protocol or "").lower() == "ropc" for e in events)
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"Automation broken by mandatory MFA: {principal.label}",
        facts=(
            *principal_facts(principal, "User"),
            ("What failed", f"{len(refused)} ARM token request(s) refused, {rejected} ARM write(s) rejected"),
            ("Error codes", summarize_list([f"{c} ({MFA_REQUIRED.get(c, 'MFA required')})" for c in codes])),
            ("Tools", summarize_list(distinct([_tool(e) for e in events]))),
            ("Password grant (ROPC)", "yes: can never satisfy MFA" if ropc else "no"),
            ("IP addresses", summarize_list(distinct([e.ip_address for e in events]))),
            ("User agents", summarize_list(distinct([e.user_agent for e in events]), shown=3)),
            ("Fix", MIGRATE),
            ("First", events[0].time.isoformat(timespec="seconds")),
            ("Last", events[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(e) for e in events),
        event_ids=tuple(e.event_id for e in events),
        first_time=events[0].time,
        last_time=events[-1].time,
    )


def _line(event: BlockedEvent) -> EventLine:
    fields = [("What", SOURCES[event.source])]
    if event.source == "AzureActivity":
        fields += [
            ("Operation", event.operation or "unknown"),
            ("Status", _status(event.detail, event.result)),
        ]
    else:
        fields.append(("Result", f"{event.result}: {MFA_REQUIRED.get(event.result, 'MFA required')}"))
    fields += [("App", _tool(event)), ("IP", event.ip_address or "unknown")]
    if event.user_agent:
        fields.append(("User agent", event.user_agent))
    return EventLine(
        event_id=event.event_id, time=event.time, source=event.source, fields=tuple(fields), flagged=True
    )


# --- cases: raw sign-in and Activity Log rows (shapes of the exported fixtures), run through the KQL

SVC_ID = "3f1c2b8e-6a0d-4e57-9c21-7d4b5a6e8f90"
SVC_UPN = "svc-terraform-003@contoso.com"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
GRAPH = "00000003-0000-0000-c000-000000000000"


def sign_in_row(event_id: str, result: str = "50074", **extra: object) -> dict:
    """A refused token request as AADNonInteractiveUserSignInLogs stores it (Status is JSON text)."""
    return {
        "TimeGenerated": "2026-11-20T02:00:41Z",
        "Id": event_id,
        "UserId": SVC_ID,
        "UserPrincipalName": SVC_UPN,
        "UserType": "Member",
        "AppId": AZURE_CLI,
        "AppDisplayName": "Microsoft Azure CLI",
        "ResourceIdentity": ARM_RESOURCE,
        "ResourceDisplayName": "Windows Azure Service Management API",
        "ResultType": result,
        "ResultDescription": "Strong Authentication is required.",
        "AuthenticationProtocol": "none",
        "AuthenticationRequirement": "multiFactorAuthentication",
        "IPAddress": "20.62.118.40",
        "UserAgent": "python/3.11.9 (Linux) AZURECLI/2.64.0 (DEB)",
        "Status": json.dumps(
            {"errorCode": int(result), "failureReason": "Strong Authentication is required"}
        ),
        "IsInteractive": False,
        **extra,
    }


def rejected_write_row(
    event_id: str, status_message: str, claims: dict | None = None,
    operation: str = "Microsoft.Storage/storageAccounts/write",
) -> dict:  # fmt: skip
    """A user's ARM write refused by the built-in MFA policy in deny mode (Failure row)."""
    properties = {
        "statusCode": "Forbidden",
        "statusMessage": status_message,
        "eventCategory": "Administrative",
    }
    return {
        "TimeGenerated": "2026-11-20T02:01:10Z",
        "EventDataId": event_id,
        "CorrelationId": f"corr-{event_id}",
        "CategoryValue": "Administrative",
        "OperationNameValue": operation,
        "ActivityStatusValue": "Failure",
        "Caller": SVC_UPN,
        "CallerIpAddress": "20.62.118.40",
        "Claims": json.dumps(
            claims
            or {
                "appid": AZURE_CLI,
                "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": SVC_UPN,
                "http://schemas.microsoft.com/identity/claims/objectidentifier": SVC_ID,
            }
        ),
        "Properties": json.dumps(properties),
    }


DENIED_BY_MFA_POLICY = json.dumps(
    {
        "error": {
            "code": "RequestDisallowedByPolicy",
            "message": "Resource 'stwebprod01' was disallowed by policy. Policy identifiers: "
            '\'[{"policyDefinition":{"name":"4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b"}}]\'.',
        }
    }
)

PERSON_ID = "9b117c67-170e-4aed-9702-658b3fddc889"
PERSON_UPN = "adelev@contoso.com"
PORTAL = {"AppId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "AppDisplayName": "Azure Portal"}
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"


def silent_refusal(event_id: str, at: str) -> dict:
    """The portal renewing a person's ARM token silently, refused for a step-up (50074)."""
    return sign_in_row(
        event_id, TimeGenerated=at, UserId=PERSON_ID, UserPrincipalName=PERSON_UPN, UserAgent=BROWSER,
        IPAddress="37.142.150.162", **PORTAL,
    )  # fmt: skip


def interactive_sign_in(event_id: str, at: str, requirement: str = "multiFactorAuthentication") -> dict:
    """The person's interactive portal sign-in for ARM, as the real export sign-in_adelete.csv
    stores one (SigninLogs, Status and LocationDetails dynamic), that satisfied `requirement`."""
    return {
        "TimeGenerated": at, "Id": event_id, "UserId": PERSON_ID, "UserPrincipalName": PERSON_UPN,
        "UserType": "Member", **PORTAL, "ResourceIdentity": ARM_RESOURCE,
        "ResourceDisplayName": "Windows Azure Service Management API", "ResultType": "0",
        "AuthenticationProtocol": "none", "AuthenticationRequirement": requirement,
        "AuthenticationDetails": json.dumps([
            {"authenticationMethod": "Password", "succeeded": True},
            {"authenticationMethod": "Mobile app notification", "succeeded": True},
        ]),
        "IPAddress": "37.142.150.162", "UserAgent": BROWSER, "Status": {"errorCode": 0},
        "IsInteractive": True,
    }  # fmt: skip


CASES = (
    Case(
        name="a person's silent portal refresh refused (50074), answered by their MFA sign-in a minute later",
        rows={
            "AADNonInteractiveUserSignInLogs": [silent_refusal("u1", "2026-11-20T09:14:03Z")],
            "SigninLogs": [interactive_sign_in("u2", "2026-11-20T09:15:10Z")],
        },
        findings=(),
    ),
    Case(
        name="a silent refusal answered only 40 minutes later, or without MFA, is not a step-up",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                silent_refusal("u3", "2026-11-20T09:14:03Z"),
                silent_refusal("u4", "2026-11-20T11:00:00Z"),
            ],
            "SigninLogs": [
                interactive_sign_in("u5", "2026-11-20T09:54:03Z"),
                interactive_sign_in("u6", "2026-11-20T11:01:00Z", requirement="singleFactorAuthentication"),
            ],
        },
        findings=(Expect(principal=PERSON_ID, event_ids=("u3", "u4")),),
    ),
    Case(
        name="a cached CLI refresh token refused for ARM (50074, non-interactive)",
        rows={"AADNonInteractiveUserSignInLogs": [sign_in_row("n1"), sign_in_row("n2", "50076")]},
        findings=(Expect(principal=SVC_ID, event_ids=("n1", "n2")),),
    ),
    Case(
        name="password grant (ROPC) refused for ARM, logged as interactive",
        rows={
            "SigninLogs": [
                sign_in_row(
                    "s1",
                    "50076",
                    AuthenticationProtocol="ropc",
                    IsInteractive=True,
                    Status={"errorCode": 50076},
                    AppId="1950a258-227b-4e31-a9cf-717495945fc2",
                    AppDisplayName="Microsoft Azure PowerShell",
                )
            ]
        },
        findings=(Expect(principal=SVC_ID, event_ids=("s1",)),),
    ),
    Case(
        name="a write rejected by the built-in MFA policy in deny mode",
        rows={"AzureActivity": [rejected_write_row("a1", DENIED_BY_MFA_POLICY)]},
        findings=(Expect(principal=SVC_ID, event_ids=("a1",)),),
    ),
    Case(
        # Claims empty: the row names its user by Caller, the UPN, alone (Activity Log event schema).
        name="a refused refresh and a rejected write without token claims are one user: one finding",
        rows={
            "AADNonInteractiveUserSignInLogs": [sign_in_row("n6")],
            "AzureActivity": [{**rejected_write_row("a5", DENIED_BY_MFA_POLICY), "Claims": ""}],
        },
        findings=(Expect(principal=SVC_ID, event_ids=("n6", "a5")),),
    ),
    Case(
        name="a person meeting the MFA prompt in the portal is not automation",
        rows={
            "SigninLogs": [
                sign_in_row(
                    "s2",
                    AuthenticationProtocol="none",
                    IsInteractive=True,
                    Status={"errorCode": 50074},
                    AppId="c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
                    AppDisplayName="Azure Portal",
                )
            ]
        },
        findings=(),
    ),
    Case(
        name="MFA required for Microsoft Graph, not ARM, and a bad password for ARM do not fire",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                sign_in_row("n3", ResourceIdentity=GRAPH),
                sign_in_row("n4", "50126"),
            ]
        },
        findings=(),
    ),
    Case(
        name="a write rejected for another policy, or by a workload identity, does not fire",
        rows={
            "AzureActivity": [
                rejected_write_row(
                    "a2",
                    json.dumps({"error": {"code": "RequestDisallowedByPolicy", "message": "locations"}}),
                ),
                rejected_write_row("a3", DENIED_BY_MFA_POLICY, claims={"idtyp": "app", "appid": AZURE_CLI}),
            ]
        },
        findings=(),
    ),
    Case(
        name="a refused action (listKeys) is no write, whatever its status message says",
        rows={
            "AzureActivity": [
                rejected_write_row(
                    "a4", DENIED_BY_MFA_POLICY, operation="Microsoft.Storage/storageAccounts/listKeys/action"
                )
            ]
        },
        findings=(),
    ),
    Case(
        name="an account already alerted does not fire again",
        rows={"AADNonInteractiveUserSignInLogs": [sign_in_row("n5")]},
        findings=(),
        context=Context(known_principals=frozenset({SVC_ID})),
    ),
)

DETECTION = Detection(
    id=ID,
    title="Automation on a user account broken by mandatory MFA",
    severity=Severity.HIGH,
    mitre=("T1078.004",),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="principal",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
