"""user-arm-write: a user account performs ARM control-plane writes for the first time.

Why: since mandatory MFA (phase 2), every create/update/delete a *user* sends to Azure Resource
Manager needs an MFA token. A user account that writes is either a person (fine, once they
have MFA) or automation hiding in a user object, which breaks under enforcement or gets MFA
scripted around. Either way a person should look at each new one, once.

What counts as a write: operations whose name ends in /write (create, update) or /delete, the
operations mandatory MFA covers. Actions (/action: POST requests such as listKeys, what-if, or
Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action, which the portal sends when
someone merely opens a blade) are no writes: a user who only ran actions raises nothing; when
actions come with writes, the alert lists them as a separate fact.

Severity: high when any write ran without MFA or failed (automation breaking, or about to);
medium otherwise.
"""

from __future__ import annotations

import json
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
    client_app_name,
    count,
    object_id,
    summarize_list,
    text,
    text_list,
    when,
)
from monitors.model import Finding, Principal, Severity

ID = "user-arm-write"

RUNBOOK = (
    "Find out who or what uses this account: the tools and IP addresses below tell a person "
    "at a portal from a script on a server.",
    "A person: make sure they have registered MFA (phishing-resistant for admins); nothing else to do.",
    "Automation (CLI, PowerShell, Terraform on a schedule, from a server or a pipeline): move it to a "
    "managed identity (code on Azure), a service principal with a certificate, or federated "
    "credentials (CI/CD). Then remove the account's Azure role assignments.",
    "If nobody recognises the activity, treat the account as compromised: revoke its sessions, "
    "reset its credentials and review what the operations changed.",
    "Accepted for now (a service account awaiting migration)? Record a waiver with an owner and an expiry.",
)

FALSE_POSITIVES = (
    "An administrator's first ARM write from a new account (expected once per person).",
    "A user added to a group that holds an Azure role: the role assignment type is Group, "
    "the caller is still "
    "a user, and this detection correctly treats them as one.",
    "Activity Log rows without token claims fall back to the Caller column; a workload whose Caller looks "
    "like an email address would be misread as a user.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserArmActivity:
    """One user's ARM writes in one tick, as summarized by the query."""

    principal: Principal
    rows: int  # of writes and deletes, as every count here but the actions'
    operations: int
    operation_names: tuple[str, ...]
    succeeded: int
    failed: int
    with_mfa: int
    without_mfa: int
    client_app_ids: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    subscriptions: tuple[str, ...]
    event_ids: tuple[str, ...]
    first_time: datetime
    last_time: datetime
    actions: int  # operations that were actions, not writes: shown, never counted as writes
    action_names: tuple[str, ...]


def parse(row: Row) -> UserArmActivity:
    upn = text(row, "UserPrincipalName", limit=256)
    user_id = object_id(row, "UserId")
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    event_ids = text_list(row, "EventIds", limit=64)
    if not event_ids:
        raise RowError("no event ids")
    return UserArmActivity(
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        rows=count(row, "Rows"),
        operations=count(row, "Operations"),
        operation_names=text_list(row, "OperationNames", limit=200),
        succeeded=count(row, "Succeeded"),
        failed=count(row, "Failed"),
        with_mfa=count(row, "WithMfa"),
        without_mfa=count(row, "WithoutMfa"),
        client_app_ids=text_list(row, "ClientAppIds", limit=64),
        ip_addresses=text_list(row, "IpAddresses", limit=64),
        subscriptions=text_list(row, "Subscriptions", limit=64),
        event_ids=event_ids,
        first_time=when(row, "FirstTime"),
        last_time=when(row, "LastTime"),
        actions=count(row, "Actions"),
        action_names=text_list(row, "ActionNames", limit=200),
    )


def evaluate(activities: Sequence[UserArmActivity], context: Context) -> list[Finding]:
    by_principal: dict[str, UserArmActivity] = {}
    for activity in activities:  # one row per user per query; a split window gives several
        key = activity.principal.key
        by_principal[key] = merge(by_principal[key], activity) if key in by_principal else activity
    return [_finding(a) for key, a in by_principal.items() if key not in context.known_principals]


def merge(a: UserArmActivity, b: UserArmActivity) -> UserArmActivity:
    def union(x: tuple[str, ...], y: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x + y))

    return UserArmActivity(
        principal=Principal(
            user_id=a.principal.user_id or b.principal.user_id,
            user_principal_name=a.principal.user_principal_name or b.principal.user_principal_name,
        ),
        rows=a.rows + b.rows,
        operations=a.operations + b.operations,  # a Start/Success pair split across halves counts twice
        operation_names=union(a.operation_names, b.operation_names),
        succeeded=a.succeeded + b.succeeded,
        failed=a.failed + b.failed,
        with_mfa=a.with_mfa + b.with_mfa,
        without_mfa=a.without_mfa + b.without_mfa,
        client_app_ids=union(a.client_app_ids, b.client_app_ids),
        ip_addresses=union(a.ip_addresses, b.ip_addresses),
        subscriptions=union(a.subscriptions, b.subscriptions),
        event_ids=union(a.event_ids, b.event_ids),
        first_time=min(a.first_time, b.first_time),
        last_time=max(a.last_time, b.last_time),
        # a half of a split window with actions and no writes makes no row: its actions are not here
        actions=a.actions + b.actions,
        action_names=union(a.action_names, b.action_names),
    )


def _finding(activity: UserArmActivity) -> Finding:
    risky = activity.without_mfa > 0 or activity.failed > 0
    return Finding(
        detection=ID,
        severity=Severity.HIGH if risky else Severity.MEDIUM,
        principal=activity.principal,
        headline=f"New user account doing ARM writes: {activity.principal.label}",
        facts=(
            ("User", activity.principal.label),
            ("Object id", activity.principal.user_id or "not in the log"),
            ("Operations", f"{activity.operations} writes and deletes ({activity.rows} log rows)"),
            ("Operation names", summarize_list(activity.operation_names)),
            *_actions_fact(activity),
            ("Tools", summarize_list([client_app_name(a) for a in activity.client_app_ids]) or "unknown"),
            ("MFA", _mfa_text(activity)),
            ("Status", f"{activity.succeeded} succeeded, {activity.failed} failed"),
            ("IP addresses", summarize_list(activity.ip_addresses)),
            ("Subscriptions", summarize_list(activity.subscriptions, shown=3)),
            ("First seen", activity.first_time.isoformat(timespec="seconds")),
            ("Last seen", activity.last_time.isoformat(timespec="seconds")),
        ),
        events=(),
        event_ids=activity.event_ids,
        first_time=activity.first_time,
        last_time=activity.last_time,
    )


def _actions_fact(activity: UserArmActivity) -> tuple[tuple[str, str], ...]:
    """Actions that came with the writes (POST requests such as listKeys): shown, never counted."""
    if not activity.actions:
        return ()
    return (("Actions (not writes)", f"{activity.actions}: {summarize_list(activity.action_names)}"),)


def _mfa_text(activity: UserArmActivity) -> str:
    if activity.without_mfa:
        return f"NO: {activity.without_mfa} of {activity.rows} rows had a token without MFA"
    if activity.with_mfa:
        return "yes, every token had MFA"
    return "unknown (the rows carry no token claims)"


# --- cases: raw AzureActivity rows, run through the KQL above by tests/unit/test_detections.py
#
# Shapes: a member's token and the Start/Success rows as in the real export
# tests/fixtures/sentinel-training-lab/azureActivity_adele.csv; a guest's token (no upn claim, the
# e-mail as Caller, the home's identity provider under its long key) as in Microsoft's Activity
# Log samples cited in guest_arm_write.py. The action names are resource provider operations
# Microsoft documents: Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action ("Check
# user authorization and license") is granted to the built-in Microsoft Sentinel Reader role, a
# reader's action (MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/
# security.md); listKeys is Microsoft.Storage's (.../permissions/storage.md).

ADELE = "9b117c67-170e-4aed-9702-658b3fddc889"
GUEST = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
IDP = "http://schemas.microsoft.com/identity/claims/identityprovider"
EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
CHECK_REQUIREMENTS = "Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action"
LIST_KEYS = "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION"
MANAGED_IDENTITY = (
    "/subscriptions/x/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a"
)


def arm_row(event_id: str, caller: str, claims: dict | None, status: str = "Success", **extra: str) -> dict:
    return {
        "TimeGenerated": "2026-11-20T10:00:00Z",
        "EventDataId": event_id,
        "CorrelationId": f"corr-{event_id}",
        "CategoryValue": "Administrative",
        "OperationNameValue": "MICROSOFT.WEB/SITES/DELETE",
        "ActivityStatusValue": status,
        "Caller": caller,
        "CallerIpAddress": "37.142.150.162",
        "SubscriptionId": "8f153238-e602-427e-a7c0-3043fbe50918",
        "Claims": "" if claims is None else json.dumps(claims),
        **extra,
    }


_USER_CLAIMS = {
    "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
    AMR: "pwd",
    UPN: "AdeleV@contoso.com",
    OID: ADELE,
}


def portal_sign_in(event_id: str, user_id: str, upn: str) -> dict:
    """The user's interactive portal sign-in for ARM, shaped as in the real export sign-in_adelete.csv."""
    return {
        "TimeGenerated": "2026-11-20T09:58:41Z", "Id": event_id, "UserId": user_id, "UserPrincipalName": upn,
        "UserType": "Member", "AppId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "AppDisplayName": "Azure Portal", "ResourceIdentity": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "ResourceDisplayName": "Windows Azure Service Management API", "ResultType": "0",
        "AuthenticationRequirement": "singleFactorAuthentication", "IsInteractive": True,
    }  # fmt: skip


# Caller is "the email address of the user who has performed the operation, UPN claim, or SPN claim
# based on availability" (Microsoft Learn, Azure Activity Log event schema): a row whose Claims are
# empty names its user by UPN alone.
NO_CLAIMS = None
OPS_ID = "2c7d1e9a-6b3f-4d8e-a1c5-7f9e0b2d4a68"

CASES = (
    Case(
        name="a row without claims and the same user's row with claims: one user, one key",
        rows={
            "AzureActivity": [
                arm_row("e20", "AdeleV@contoso.com", _USER_CLAIMS),
                arm_row("e21", "AdeleV@contoso.com", NO_CLAIMS),
            ]
        },
        findings=(Expect(principal=ADELE, event_ids=("e20", "e21")),),
    ),
    Case(
        name="a row without claims takes the object id of the user's sign-in",
        rows={
            "AzureActivity": [arm_row("e22", "Ops@contoso.com", NO_CLAIMS)],
            "SigninLogs": [portal_sign_in("s22", OPS_ID, "ops@contoso.com")],
        },
        findings=(Expect(principal=OPS_ID, event_ids=("e22",)),),
    ),
    Case(
        name="a user in the baseline by object id does not alert again for a row without claims",
        rows={
            "AzureActivity": [arm_row("e23", "AdeleV@contoso.com", NO_CLAIMS)],
            "SigninLogs": [portal_sign_in("s23", ADELE, "AdeleV@contoso.com")],
        },
        findings=(),
        context=Context(known_principals=frozenset({ADELE})),
    ),
    Case(
        name="user with a password-only portal token",
        rows={"AzureActivity": [arm_row("e1", "AdeleV@contoso.com", _USER_CLAIMS)]},
        findings=(Expect(principal=ADELE, event_ids=("e1",)),),
    ),
    Case(
        name="duplicate rows and a Start/Success pair make one finding",
        rows={
            "AzureActivity": [
                arm_row("e1", "AdeleV@contoso.com", _USER_CLAIMS, status="Start", CorrelationId="op-1"),
                arm_row("e2", "AdeleV@contoso.com", _USER_CLAIMS, CorrelationId="op-1"),
                arm_row("e2", "AdeleV@contoso.com", _USER_CLAIMS, CorrelationId="op-1"),
            ]
        },
        findings=(Expect(principal=ADELE, event_ids=("e1", "e2")),),
    ),
    Case(
        name="user through a group role assignment is still a user",
        rows={
            "AzureActivity": [
                arm_row(
                    "e3",
                    "AdeleV@contoso.com",
                    _USER_CLAIMS,
                    Authorization='{"evidence":{"principalType":"Group"}}',
                )
            ]
        },
        findings=(Expect(principal=ADELE, event_ids=("e3",)),),
    ),
    Case(
        name="no claims: a Caller with @ is a user",
        rows={"AzureActivity": [arm_row("e4", "ops@contoso.com", None)]},
        findings=(Expect(principal="ops@contoso.com", event_ids=("e4",)),),
    ),
    Case(
        name="a guest's token has no upn claim: the Caller, its e-mail, names the guest",
        rows={
            "AzureActivity": [
                arm_row(
                    "e10",
                    "lars.ng@fabrikam.com",
                    {
                        "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                        AMR: "pwd",
                        EMAIL: "lars.ng@fabrikam.com",
                        IDP: "https://sts.windows.net/c72298a0-1263-446b-88be-218b13844c82/",
                        OID: GUEST,
                    },
                )
            ]
        },
        findings=(Expect(principal=GUEST, event_ids=("e10",)),),
    ),
    Case(
        name="a portal session of actions only (a blade's requirement check, listKeys) is no write",
        rows={
            "AzureActivity": [
                arm_row("e11", "AdeleV@contoso.com", _USER_CLAIMS, OperationNameValue=CHECK_REQUIREMENTS),
                arm_row("e12", "AdeleV@contoso.com", _USER_CLAIMS, OperationNameValue=LIST_KEYS),
            ]
        },
        findings=(),
    ),
    Case(
        name="actions with a delete: one finding, the actions counted apart",
        rows={
            "AzureActivity": [
                arm_row("e13", "AdeleV@contoso.com", _USER_CLAIMS, OperationNameValue=LIST_KEYS),
                arm_row("e14", "AdeleV@contoso.com", _USER_CLAIMS),
            ]
        },
        findings=(Expect(principal=ADELE, event_ids=("e14",)),),
    ),
    Case(
        name="managed identity never fires",
        rows={
            "AzureActivity": [
                arm_row(
                    "e5",
                    "0b3c4d5e-1111-4222-8333-444455556666",
                    {
                        "idtyp": "app",
                        "xms_mirid": MANAGED_IDENTITY,
                    },
                )
            ]
        },
        findings=(),
    ),
    Case(
        name="service principal never fires, even with a UPN-like caller",
        rows={
            "AzureActivity": [
                arm_row(
                    "e6",
                    "deploy@contoso.com",
                    {"idtyp": "app", "appid": "11111111-2222-4333-8444-555555555555"},
                )
            ]
        },
        findings=(),
    ),
    Case(
        name="a user already in the baseline does not fire again",
        rows={"AzureActivity": [arm_row("e7", "AdeleV@contoso.com", _USER_CLAIMS)]},
        findings=(),
        context=Context(known_principals=frozenset({ADELE})),
    ),
    Case(
        name="reads and non-administrative categories are ignored",
        rows={
            "AzureActivity": [
                arm_row(
                    "e8", "AdeleV@contoso.com", _USER_CLAIMS, OperationNameValue="Microsoft.Web/sites/read"
                ),
                arm_row("e9", "AdeleV@contoso.com", _USER_CLAIMS, CategoryValue="Policy"),
            ]
        },
        findings=(),
    ),
)

DETECTION = Detection(
    id=ID,
    title="User account performs ARM writes for the first time",
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
