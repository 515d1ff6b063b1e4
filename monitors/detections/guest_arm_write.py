"""guest-arm-write: a B2B guest performs ARM writes in this tenant.

Why: mandatory MFA covers guests too. A guest's ARM write needs a token that satisfied MFA
either here (the guest registered MFA in this tenant) or in its home tenant, and then only if
this tenant's cross-tenant access settings trust the home tenant's MFA. Nobody in this tenant
manages the guest's credentials, so when a partner's script or consultant writes here someone
must own the relationship: who invited them, does the access still make sense, will it break.

What counts as a write: operations whose name ends in /write (create, update) or /delete, the
operations mandatory MFA covers. Actions (/action: POST requests such as listKeys, what-if or
the checks a portal blade makes when it opens) never raise the alert; when they come with
writes, the alert lists them as a separate fact.

A guest is recognised from its token (AzureActivity has no UserType): the identity provider
claim (`idp`, stored as http://schemas.microsoft.com/identity/claims/identityprovider) names
someone other than this tenant's issuer: another tenant (https://sts.windows.net/<home>/) or
live.com for a personal Microsoft account. The home tenant is read from that claim. A guest's
token has no upn claim and its Caller is its e-mail address, which the card shows.
The inviter is not in the sign-in or Activity logs; the card says where to find it.

Severity: high when a write ran without MFA or failed; medium otherwise.
Dedupe: once per guest (a baseline).
"""

from __future__ import annotations

import json
import re
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
    distinct,
    new_groups,
    object_id,
    summarize_list,
    text,
    when,
)
from monitors.detections.entra import has_mfa
from monitors.model import EventLine, Finding, Principal, Severity

ID = "guest-arm-write"

RUNBOOK = (
    "Find who owns the relationship: in the Entra admin center open the guest (Users, by the object "
    "id below) and read its sponsors and 'Invited by'; the directory audit log entry 'Invite external "
    "user' names the inviter. Ask them whether this access is still needed.",
    "Check MFA: the guest's ARM writes need MFA from this tenant or from its home tenant (below). If "
    "this tenant's cross-tenant access settings do not trust MFA from that tenant, the guest must "
    "register MFA here; otherwise the partner's MFA applies.",
    "Automation from the partner (a script, a pipeline, a managed service provider's tooling) "
    "should not run as a guest user: ask for a workload identity instead (a multi-tenant app, or Azure "
    "Lighthouse delegated access) and remove the guest's Azure role assignments.",
    "Not needed any more, or nobody recognises it: remove the role assignments and the guest account, "
    "and review what the operations changed.",
    "Accepted (a named consultant, until a date)? Record a waiver with the sponsor as owner and an expiry.",
)

FALSE_POSITIVES = (
    "A consultant or partner engineer invited to do exactly this work: expected once per guest; "
    "confirm with the sponsor and waive with an expiry.",
    "Users of another tenant of a multitenant organization (cross-tenant synchronization) are members "
    "here but sign in at home: their tokens name their home tenant, so they show as guests, and their "
    "MFA is trusted only as the cross-tenant access settings say.",
)

INVITER = "not in these logs: see the guest's sponsors, and 'Invite external user' in the directory audit log"
_TENANT_IN_IDP = re.compile(r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")
# Personal Microsoft accounts: idp is "live.com" or the Microsoft account tenant's issuer
# (Microsoft Entra access token claims reference, `idp`).
MICROSOFT_ACCOUNT_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
MICROSOFT_ACCOUNT = "a personal Microsoft account (live.com)"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestEvent:
    """One Activity Log row of a guest's ARM operation."""

    event_id: str
    time: datetime
    principal: Principal
    operation: str
    operation_key: str  # groups the Start, Accept and Success/Failure rows of one operation
    status: str
    with_mfa: bool
    identity_provider: str | None
    resource_tenant: str | None
    client_app_id: str | None
    ip_address: str | None
    subscription: str | None
    resource: str | None

    @property
    def failed(self) -> bool:
        return self.status.lower() in ("failure", "failed")

    @property
    def is_write(self) -> bool:
        """Create, update or delete; an /action (a POST such as listKeys) is not a write."""
        return self.operation.endswith(("/write", "/delete"))

    @property
    def home_tenant(self) -> str | None:
        """The home tenant id from the idp claim (https://sts.windows.net/<id>/), a personal
        Microsoft account, else the provider as the claim names it."""
        if not self.identity_provider:
            return None
        match = _TENANT_IN_IDP.search(self.identity_provider)
        tenant = match.group(1).lower() if match else None
        if tenant == MICROSOFT_ACCOUNT_TENANT or self.identity_provider.lower() == "live.com":
            return MICROSOFT_ACCOUNT
        return tenant or self.identity_provider


def parse(row: Row) -> GuestEvent:
    upn = text(row, "UserPrincipalName", limit=256)
    user_id = object_id(row, "UserId")
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    event_id = text(row, "EventId", required=True, limit=64) or ""
    return GuestEvent(
        event_id=event_id,
        time=when(row, "TimeGenerated"),
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        operation=(text(row, "Operation", required=True, limit=200) or "").lower(),
        operation_key=text(row, "OperationKey", limit=1200) or event_id,  # two ids and a name
        status=text(row, "Status", limit=32) or "unknown",
        with_mfa=has_mfa(text(row, "AuthMethods", limit=64)),
        identity_provider=text(row, "IdentityProvider", limit=200),
        resource_tenant=text(row, "ResourceTenant", limit=64),
        client_app_id=text(row, "ClientAppId", limit=64),
        ip_address=text(row, "IPAddress", limit=64),
        subscription=text(row, "SubscriptionId", limit=64),
        resource=text(row, "Resource", limit=400),
    )


def evaluate(events: Sequence[GuestEvent], context: Context) -> list[Finding]:
    """One finding per new guest that wrote; a guest whose rows are all actions raises nothing."""
    groups = new_groups(events, lambda e: e.principal.key, context.known_principals)
    return [_finding(group) for group in groups if any(e.is_write for e in group)]


def _finding(group: list[GuestEvent]) -> Finding:
    events = [e for e in group if e.is_write]
    actions = [e for e in group if not e.is_write]
    principal = next((e.principal for e in group if e.principal.user_id), group[0].principal)
    operations = distinct([e.operation_key for e in events])
    without_mfa = distinct([e.operation_key for e in events if not e.with_mfa])
    failed = distinct([e.operation_key for e in events if e.failed])
    homes = distinct([e.home_tenant for e in events])
    home = summarize_list(homes) if homes else "unknown (the token names no identity provider)"
    names = summarize_list(distinct([e.operation for e in events]))
    tools = distinct([client_app_name(e.client_app_id) for e in events if e.client_app_id])
    mfa = f"NO: {len(without_mfa)} operation(s) without MFA" if without_mfa else "yes, every token had MFA"
    return Finding(
        detection=ID,
        severity=Severity.HIGH if without_mfa or failed else Severity.MEDIUM,
        principal=principal,
        headline=f"B2B guest doing ARM writes: {principal.label}",
        facts=(
            ("Guest", principal.label),
            ("Object id (this tenant)", principal.user_id or "not in the log"),
            ("Home tenant", home),
            ("Invited by", INVITER),
            ("Writes and deletes", f"{len(operations)} ({len(events)} log rows): {names}"),
            *_actions_fact(actions),
            ("MFA", mfa),
            ("Failed", f"{len(failed)} of {len(operations)} operations"),
            ("Tools", summarize_list(tools)),
            ("IP addresses", summarize_list(distinct([e.ip_address for e in events]))),
            ("Subscriptions", summarize_list(distinct([e.subscription for e in events]), shown=3)),
            ("First", events[0].time.isoformat(timespec="seconds")),
            ("Last", events[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(e) for e in events),
        event_ids=tuple(e.event_id for e in events),
        first_time=events[0].time,
        last_time=events[-1].time,
    )


def _actions_fact(actions: list[GuestEvent]) -> tuple[tuple[str, str], ...]:
    """Actions that came with the writes (POST requests such as listKeys): shown, never counted."""
    if not actions:
        return ()
    operations = distinct([e.operation_key for e in actions])
    names = summarize_list(distinct([e.operation for e in actions]))
    return (("Actions (not writes)", f"{len(operations)}: {names}"),)


def _line(event: GuestEvent) -> EventLine:
    fields = (
        ("Operation", event.operation),
        ("Status", event.status),
        ("MFA", "yes" if event.with_mfa else "no"),
        ("Resource", event.resource or "unknown"),
        ("IP", event.ip_address or "unknown"),
    )
    return EventLine(
        event_id=event.event_id,
        time=event.time,
        source="AzureActivity",
        fields=fields,
        flagged=not event.with_mfa or event.failed,
    )


# --- cases: raw AzureActivity rows, run through the KQL above by tests/unit/test_detections.py
#
# Where the shapes come from (rows are facts; each was seen before it was written here):
# - A guest's ARM token in the Activity Log: Microsoft's "Monitoring Azure Monitor data
#   reference" (MicrosoftDocs/azure-docs, articles/azure-monitor/monitor-azure-monitor-reference.md,
#   2021-2022: "Create Action Group" and "Delete Action Group") shows a personal Microsoft
#   account guest's portal write and delete: claims with
#   http://schemas.microsoft.com/identity/claims/identityprovider = "live.com", the e-mail in
#   .../claims/emailaddress and as Caller, .../claims/name = "live.com#<e-mail>", no upn claim.
# - A guest from another Entra tenant: "Understand user tokens in B2B collaboration"
#   (MicrosoftDocs/entra-docs, docs/external-id/user-token.md): idp is the home tenant's issuer
#   (https://sts.windows.net/<home>/), email and unique_name are the e-mail, no upn; the access
#   token claims reference (docs/identity-platform/access-token-claims-reference.md) says idp
#   equals iss "unless the user account isn't in the same tenant as the issuer, such as guests".
#   ARM records idp under the long key above for every token that has one: app tokens carry it
#   equal to iss (Event Grid's subscription events, MicrosoftDocs/azure-docs
#   articles/event-grid/event-schema-subscriptions.md, its listKeys/action sample).
# - A member's token: the real export tests/fixtures/sentinel-training-lab/azureActivity_adele.csv
#   has no identity provider claim at all.
# - Actions: listKeys and virtualMachines/start are resource provider operations Microsoft
#   documents, and logs in the Administrative category (the Event Grid sample above).

RESOURCE_TENANT = "d8d95641-7656-4287-916b-1ab0d7670dce"
HOME_TENANT = "c72298a0-1263-446b-88be-218b13844c82"
GUEST_ID = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
GUEST_MAIL = "lars.ng@fabrikam.com"
MSA_GUEST_ID = "3c9e1f7a-2b4d-4e6f-8a1c-5d7e9f0b2c4e"
MSA_GUEST_MAIL = "kai.tanaka@outlook.example"
ISSUER = f"https://sts.windows.net/{RESOURCE_TENANT}/"
AMR = "http://schemas.microsoft.com/claims/authnmethodsreferences"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
IDP = "http://schemas.microsoft.com/identity/claims/identityprovider"
OID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID = "http://schemas.microsoft.com/identity/claims/tenantid"


def guest_claims(
    idp: str = f"https://sts.windows.net/{HOME_TENANT}/", amr: str = "pwd", mail: str = GUEST_MAIL,
    oid: str = GUEST_ID,
) -> dict:  # fmt: skip
    """A guest's ARM token as the Activity Log records it: no upn, the e-mail, the home's idp."""
    name = f"live.com#{mail}" if idp == "live.com" else mail
    return {
        "aud": "https://management.core.windows.net/", "iss": ISSUER,
        AMR: amr, "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "appidacr": "2",
        EMAIL: mail, IDP: idp, OID: oid, TID: RESOURCE_TENANT, NAME: name, "ver": "1.0",
    }  # fmt: skip


def member_claims(upn: str = "AdeleV@contoso.com", **extra: str) -> dict:
    """A member's token, as in the real export: a upn claim and no identity provider claim."""
    return {"aud": "https://management.core.windows.net/", "iss": ISSUER, AMR: "pwd",
            "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", OID: "9b117c67-170e-4aed-9702-658b3fddc889",
            TID: RESOURCE_TENANT, NAME: upn, UPN: upn, "ver": "1.0", **extra}  # fmt: skip


def arm_row(
    event_id: str, caller: str, token: dict, status: str = "Success",
    operation: str = "Microsoft.Web/sites/write", **extra: str,
) -> dict:  # fmt: skip
    return {
        "TimeGenerated": "2026-11-20T13:05:00Z",
        "EventDataId": event_id,
        "OperationId": f"op-{event_id}",
        "CorrelationId": f"corr-{event_id}",
        "CategoryValue": "Administrative",
        "OperationNameValue": operation,
        "ActivityStatusValue": status,
        "Caller": caller,
        "CallerIpAddress": "91.64.10.22",
        "SubscriptionId": "2e1a9236-0b4f-4dc2-9a67-ff6de804d3f3",
        "_ResourceId": "/subscriptions/2e1a9236-0b4f-4dc2-9a67-ff6de804d3f3/resourcegroups/rg-web-prod/"
        "providers/microsoft.web/sites/app-web-prod-01",
        "Claims": json.dumps(token),
        **extra,
    }


LIST_KEYS = "Microsoft.Storage/storageAccounts/listKeys/action"
VM_START = "Microsoft.Compute/virtualMachines/start/action"

CASES = (
    Case(
        name="a partner tenant's guest: no upn, Caller the e-mail; Start and Success are one write",
        rows={
            "AzureActivity": [
                # the rows of one operation share its ids, as in the real export azureActivity_adele.csv
                arm_row(
                    "g1", GUEST_MAIL, guest_claims(), status="Start", OperationId="op-1", CorrelationId="c-1"
                ),
                arm_row("g2", GUEST_MAIL, guest_claims(), OperationId="op-1", CorrelationId="c-1"),
            ]
        },
        findings=(Expect(principal=GUEST_ID, event_ids=("g1", "g2")),),
    ),
    Case(
        name="a personal Microsoft account guest (idp live.com) deletes an action group, with MFA",
        rows={
            "AzureActivity": [
                arm_row(
                    "g3",
                    MSA_GUEST_MAIL,
                    guest_claims("live.com", "pwd,mfa", MSA_GUEST_MAIL, MSA_GUEST_ID),
                    operation="microsoft.insights/actionGroups/delete",
                )
            ]
        },
        findings=(Expect(principal=MSA_GUEST_ID, event_ids=("g3",)),),
    ),
    Case(
        name="a guest's actions with a write: one alert, the actions listed apart",
        rows={
            "AzureActivity": [
                arm_row("g4", GUEST_MAIL, guest_claims(), operation=LIST_KEYS),
                arm_row("g5", GUEST_MAIL, guest_claims(), operation="MICROSOFT.WEB/SITES/DELETE"),
            ]
        },
        findings=(Expect(principal=GUEST_ID, event_ids=("g5",)),),
    ),
    Case(
        name="a guest that only runs actions (listKeys, starting a VM) does not fire",
        rows={
            "AzureActivity": [
                arm_row("g6", GUEST_MAIL, guest_claims(), operation=LIST_KEYS),
                arm_row(
                    "g7",
                    MSA_GUEST_MAIL,
                    guest_claims("live.com", "pwd", MSA_GUEST_MAIL, MSA_GUEST_ID),
                    operation=VM_START,
                ),
            ]
        },
        findings=(),
    ),
    Case(
        name="members of this tenant do not fire: no idp claim, or this tenant's issuer",
        rows={
            "AzureActivity": [
                arm_row("g8", "AdeleV@contoso.com", member_claims()),
                arm_row("g9", "AdeleV@contoso.com", member_claims(**{IDP: ISSUER})),
            ]
        },
        findings=(),
    ),
    Case(
        name="a service principal from a partner tenant is a workload, not a guest",
        rows={
            "AzureActivity": [
                arm_row("g10", "0b3c4d5e-1111-4222-8333-444455556666", {**guest_claims(), "idtyp": "app"})
            ]
        },
        findings=(),
    ),
    Case(
        name="a guest already alerted does not fire again",
        rows={"AzureActivity": [arm_row("g11", GUEST_MAIL, guest_claims())]},
        findings=(),
        context=Context(known_principals=frozenset({GUEST_ID})),
    ),
)

DETECTION = Detection(
    id=ID,
    title="B2B guest performs ARM writes",
    severity=Severity.HIGH,
    mitre=("T1078.004", "T1199"),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="principal",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
