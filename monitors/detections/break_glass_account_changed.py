"""break-glass-account-changed: a directory change to an emergency-access account, from AuditLogs.

Why: an attacker who holds a privileged role weakens the break-glass accounts first and uses
them later: deletes the FIDO2 key and registers their own method, resets the password, takes
the account out of Global Administrator, disables it, or drops it from the Conditional Access
exclusion so it is locked out the day it is needed. None of that is a sign-in, so
break-glass-use stays quiet until the account is used, and the drill only notices in 90 days.
Peers: Microsoft Sentinel's "Authentication Methods Changed for Privileged Account" and
"Conditional Access - A Conditional Access user/group/role exclusion has changed".

What fires, every event, critical, never waived (operation names from Microsoft's "Microsoft
Entra audit log activity reference"):
- any audit entry whose targets name the account, by object id or UPN: security info
  registered, updated or deleted by the user or an admin, password reset or changed, the
  account disabled, deleted or restored, a directory role added or removed, membership of a
  group added or removed, and any other update to the user object;
- a Conditional Access policy added, updated or deleted whose users condition includes or
  excludes the account (by object id) or a group it is in (BREAK_GLASS_GROUPS) differently
  before and after: the policy's old and new JSON are compared in Python.

The alert says who did it (user or application, and from which IP address), what changed
(each modified property's old and new value) and the runbook. Every event is alerted exactly
once; a tick's changes become one alert per account (a policy change touching several
accounts is listed once, under the first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    distinct,
    dynamic,
    principal_facts,
    summarize_list,
    text,
    when,
)
from monitors.model import EventLine, Finding, Principal, Severity
from monitors.settings import BreakGlassAccounts

ID = "break-glass-account-changed"

RUNBOOK = (
    "Call the account's owners and whoever made the change (below) now: was it a planned change "
    "with a change reference (a key replaced, a drill, a role review)? Anything else is an incident.",
    "Not planned: treat the initiator as compromised. Revoke their sessions, and reverse the change: "
    "delete any authentication method you do not recognise and register the account's own FIDO2 key "
    "or certificate again, reset the password to a sealed one, restore the role, the group and the "
    "Conditional Access exclusion, enable or restore the account.",
    "Review everything else the initiator did in the directory audit log and the Activity Log, from "
    "an hour before this change.",
    "Then run the break-glass drill: sign in with the account as documented, so you know it works.",
    "Record the outcome on the alert (acknowledge or resolve with the change reference). "
    "These alerts cannot be waived.",
)

FALSE_POSITIVES = (
    "Planned maintenance of the accounts: a FIDO2 key replaced, the password rotated, the account "
    "added to a new role or group. It must still alert; acknowledge it with the change reference.",
    "The accounts' own sign-in during the drill may register security info (a new key): expected "
    "when the drill says so.",
)

SECURITY_INFO = "security info"
POLICY_OPERATIONS = (
    "add conditional access policy",
    "update conditional access policy",
    "delete conditional access policy",
)
USER_LISTS = ("includeUsers", "excludeUsers", "includeGroups", "excludeGroups")
MAX_VALUE = 160  # one modified property's old or new value, as shown


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifiedProperty:
    name: str
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    object_id: str
    upn: str  # lower-cased; "" when the target is not a user
    kind: str  # User, Group, Role, Policy, ...
    name: str
    modified: tuple[ModifiedProperty, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountChange:
    event_id: str
    time: datetime
    operation: str
    category: str | None
    result: str
    reason: str | None
    service: str | None
    initiator: str  # a UPN, or an application's name
    initiator_id: str | None
    ip_address: str | None
    targets: tuple[Target, ...]


def parse(row: Row) -> AccountChange:
    initiated = dynamic(row, "InitiatedBy") or {}
    targets = dynamic(row, "TargetResources") or []
    if not isinstance(initiated, dict) or not isinstance(targets, list):
        raise RowError("InitiatedBy or TargetResources has an unexpected shape")
    user = initiated.get("user") if isinstance(initiated.get("user"), dict) else None
    app = initiated.get("app") if isinstance(initiated.get("app"), dict) else None
    if user:
        initiator = _field(user, "userPrincipalName") or _field(user, "displayName") or _field(user, "id")
        initiator_id, ip_address = _field(user, "id"), _field(user, "ipAddress")
    elif app:
        name = _field(app, "displayName") or _field(app, "appId") or "unknown"
        initiator = f"application {name}"
        initiator_id, ip_address = _field(app, "servicePrincipalId"), None
    else:
        initiator, initiator_id, ip_address = "", None, None
    return AccountChange(
        event_id=text(row, "EventId", required=True, limit=200) or "",
        time=when(row, "TimeGenerated"),
        operation=text(row, "Operation", required=True, limit=200) or "",
        category=text(row, "Category", limit=100),
        result=text(row, "Result", limit=64) or "unknown",
        reason=text(row, "ResultReason", limit=300),
        service=text(row, "Service", limit=100),
        initiator=initiator or "unknown",
        initiator_id=initiator_id,
        ip_address=ip_address,
        targets=tuple(_target(t) for t in targets if isinstance(t, dict)),
    )


def _field(value: dict[str, Any], key: str, limit: int = 256) -> str | None:
    """A text field of a JSON object from a log row, bounded; anything else is absent."""
    item = value.get(key)
    if isinstance(item, bool) or not isinstance(item, (str, int)) or item == "":
        return None
    return str(item)[:limit]


def _target(value: dict[str, Any]) -> Target:
    modified = value.get("modifiedProperties")
    return Target(
        object_id=(_field(value, "id", 64) or "").lower(),
        upn=(_field(value, "userPrincipalName") or "").lower(),
        kind=_field(value, "type", 64) or "",
        name=_field(value, "displayName") or "",
        modified=tuple(
            ModifiedProperty(
                name=_field(p, "displayName", 128) or "",
                # policy JSON can be long; it is read whole, shown trimmed
                old=_field(p, "oldValue", 200_000) or "",
                new=_field(p, "newValue", 200_000) or "",
            )
            for p in (modified if isinstance(modified, list) else [])
            if isinstance(p, dict)
        ),
    )


# --- logic


@dataclass(frozen=True, slots=True, kw_only=True)
class Touched:
    """One way a change touches a watched account or group."""

    principal: Principal
    what: str


def evaluate(changes: Sequence[AccountChange], context: Context) -> list[Finding]:
    by_principal: dict[str, tuple[Principal, list[tuple[AccountChange, list[Touched]]]]] = {}
    for change in changes:
        if change.event_id in context.seen_event_ids:
            continue  # alerted by an earlier tick (overlapping window, duplicate row, crash recovery)
        touched = touches(change, context.break_glass, context.break_glass_groups)
        if touched:  # the query matched it; re-check here, never trust the row alone
            first = touched[0].principal
            by_principal.setdefault(first.key, (first, []))[1].append((change, touched))
    return [
        _finding(principal, sorted(group, key=lambda item: (item[0].time, item[0].event_id)))
        for principal, group in by_principal.values()
    ]


def touches(change: AccountChange, accounts: BreakGlassAccounts, groups: frozenset[str]) -> list[Touched]:
    """The watched accounts and groups a change touches, accounts first."""
    found = [
        Touched(
            principal=Principal(user_id=t.object_id or None, user_principal_name=t.upn or None),
            what=kind_of(change.operation, t),
        )
        for t in change.targets
        if t.object_id in accounts.object_ids or (t.upn and t.upn in accounts.upns)
    ]
    if change.operation.lower() in POLICY_OPERATIONS:
        found += _policy_touches(change, accounts, groups)
    unique: dict[str, Touched] = {}
    for touch in found:
        unique.setdefault(touch.principal.key, touch)
    return sorted(unique.values(), key=lambda t: (t.principal.user_principal_name or "~", t.principal.key))


def kind_of(operation: str, target: Target) -> str:
    """What kind of change an operation makes to a user, in on-call's words."""
    name = operation.lower()
    names = {p.name for p in target.modified}
    if SECURITY_INFO in name or "StrongAuthenticationMethod" in names:
        return "authentication methods"
    if "password" in name:
        return "password"
    if name in ("disable account", "enable account", "delete user", "hard delete user", "restore user") or (
        "AccountEnabled" in names
    ):
        return "account state"
    if "role" in name:
        return "directory role"
    if "group" in name:
        return "group membership"
    return "user object"


def _policy_touches(
    change: AccountChange, accounts: BreakGlassAccounts, groups: frozenset[str]
) -> list[Touched]:
    """Watched ids whose place in a Conditional Access policy's users condition differs before and after."""
    found = []
    for target in change.targets:
        for prop in target.modified:
            if prop.name != "ConditionalAccessPolicy":
                continue
            before, after = _user_lists(prop.old), _user_lists(prop.new)
            for watched in sorted(accounts.object_ids | groups):
                was, now = _places(before, watched), _places(after, watched)
                if was == now:
                    continue
                principal = (
                    Principal(user_id=watched, user_principal_name=None)
                    if watched in accounts.object_ids
                    else Principal(user_id=None, user_principal_name=f"group {watched}")
                )
                policy = target.name or target.object_id or "unknown policy"
                what = f"Conditional Access policy {policy!r}: {_moved(was, now)}"
                found.append(Touched(principal=principal, what=what))
    return found


def _user_lists(policy_json: str) -> dict[str, frozenset[str]]:
    """The users condition of a policy as the audit log records it (empty when added or deleted)."""
    if not policy_json:
        return {}
    try:
        policy = json.loads(policy_json)
    except ValueError:
        raise RowError("a Conditional Access policy value is not JSON") from None
    users = ((policy or {}).get("conditions") or {}).get("users") if isinstance(policy, dict) else None
    if not isinstance(users, dict):
        return {}
    return {
        name: frozenset(str(v).lower() for v in users.get(name) or () if isinstance(v, str))
        for name in USER_LISTS
    }


def _places(lists: dict[str, frozenset[str]], watched: str) -> tuple[str, ...]:
    return tuple(name for name in USER_LISTS if watched in lists.get(name, frozenset()))


def _moved(was: tuple[str, ...], now: tuple[str, ...]) -> str:
    def say(places: tuple[str, ...]) -> str:
        return " and ".join(places) if places else "not named"

    return f"{say(was)} before, {say(now)} after"


def _finding(principal: Principal, group: list[tuple[AccountChange, list[Touched]]]) -> Finding:
    changes = [change for change, _ in group]
    kinds = distinct(_kind_label(t.what) for _, touched in group for t in touched)
    initiators = distinct(c.initiator for c in changes)
    return Finding(
        detection=ID,
        severity=Severity.CRITICAL,
        principal=principal,
        headline=f"Break-glass account changed: {principal.label} ({', '.join(kinds)})",
        facts=(
            *principal_facts(principal),
            ("Changes", f"{len(changes)}: {', '.join(kinds)}"),
            ("Changed by", summarize_list(initiators)),
            ("From", summarize_list(distinct(c.ip_address for c in changes))),
            ("First", changes[0].time.isoformat(timespec="seconds")),
            ("Last", changes[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(change, touched) for change, touched in group),
        event_ids=tuple(distinct(c.event_id for c in changes)),
        first_time=changes[0].time,
        last_time=changes[-1].time,
    )


def _kind_label(what: str) -> str:
    return "Conditional Access" if what.startswith("Conditional Access") else what


def _line(change: AccountChange, touched: list[Touched]) -> EventLine:
    fields = [
        ("What", "; ".join(t.what for t in touched)),
        ("Operation", change.operation),
        ("Result", change.result + (f": {change.reason}" if change.reason else "")),
        ("By", change.initiator + (f" ({change.initiator_id})" if change.initiator_id else "")),
        ("IP", change.ip_address or "not in the log"),
    ]
    if len(touched) > 1:
        fields.append(("Touches", ", ".join(t.principal.label for t in touched)))
    changed = list(_changed(change.targets))
    if changed:
        fields.append(("Changed", summarize_list(changed, shown=6)))
    return EventLine(
        event_id=change.event_id, time=change.time, source="AuditLogs", fields=tuple(fields), flagged=True
    )


def _changed(targets: Iterable[Target]) -> Iterable[str]:
    """'Name: old → new' per modified property; a whole policy is summarised by its own diff."""
    for target in targets:
        for prop in target.modified:
            if prop.name in ("ConditionalAccessPolicy", "Included Updated Properties"):
                continue  # the policy diff is in What; the list of names repeats the others
            yield f"{prop.name}: {_shown(prop.old)} → {_shown(prop.new)}"


def _shown(value: str) -> str:
    """A modified property's value as text: the log keeps it JSON-encoded ('"x"', '[true]')."""
    try:
        decoded = json.loads(value) if value else None
    except ValueError:
        decoded = value
    if decoded in (None, "", []):
        shown = "(none)"
    elif isinstance(decoded, list):
        shown = ", ".join(str(v) for v in decoded)
    else:
        shown = str(decoded)
    return shown if len(shown) <= MAX_VALUE else shown[: MAX_VALUE - 1] + "…"


# --- cases: AuditLogs rows, run through the KQL above by tests/unit/test_detections.py
#
# Row shapes: AuditLogs columns from monitors/schema/tables.json; InitiatedBy ({"user": {id,
# displayName, userPrincipalName, ipAddress}} or {"app": {appId, displayName,
# servicePrincipalId}}) and TargetResources ([{id, displayName, type, userPrincipalName,
# modifiedProperties: [{displayName, oldValue, newValue}]}], values JSON-encoded) as Microsoft
# Graph's directoryAudit resource documents them (learn.microsoft.com/graph/api/resources/
# directoryaudit, and the example of "Get directoryAudit"). Role and group changes carry
# Role.DisplayName (JSON-quoted: '"Global Administrator"') among the user target's modified
# properties, as Microsoft Sentinel's rule reads them (Azure/Azure-Sentinel, "Solutions/Microsoft
# Entra ID/Analytic Rules/UserAssignedPrivilegedRole.yaml"); a Conditional Access change carries
# the whole policy before and after as JSON text in its first modified property,
# "ConditionalAccessPolicy", with conditions.users.excludeUsers and the like ("Conditional Access
# - A Conditional Access usergrouprole exclusion has changed.yaml", same folder).

BG_ID = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
BG_UPN = "bg-admin1@contoso.onmicrosoft.com"
BG2_UPN = "bg-admin2@contoso.onmicrosoft.com"
BG_GROUP = "3c1f0a9e-6d2b-4f7a-8e5c-1b2d3e4f5a6b"
ALICE_ID = "11111111-2222-4333-8444-555555555555"
ALICE_UPN = "alice@contoso.com"
MALLORY = {
    "user": {
        "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "displayName": "Mallory Admin",
        "userPrincipalName": "mallory@contoso.com",
        "ipAddress": "198.51.100.23",
    }
}
ACCOUNTS = BreakGlassAccounts(object_ids=frozenset({BG_ID}), upns=frozenset({BG2_UPN}))
WATCHING = Context(break_glass=ACCOUNTS, break_glass_groups=frozenset({BG_GROUP}))


def audit_row(
    event_id: str,
    operation: str,
    targets: list[dict[str, Any]],
    *,
    category: str = "UserManagement",
    service: str = "Core Directory",
    initiated_by: dict[str, Any] = MALLORY,
    reason: str = "",
) -> dict[str, Any]:
    return {
        "TimeGenerated": "2026-11-20T02:40:00Z",
        "Id": event_id,
        "OperationName": operation,
        "ActivityDisplayName": operation,
        "Category": category,
        "LoggedByService": service,
        "Result": "success",
        "ResultReason": reason,
        "InitiatedBy": initiated_by,
        "TargetResources": targets,
        "AADOperationType": "Update",
    }


def user_target(object_id: str, upn: str, modified: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "id": object_id,
        "displayName": upn.split("@")[0],
        "type": "User",
        "userPrincipalName": upn,
        "modifiedProperties": modified or [],
    }


def role_added(
    event_id: str, object_id: str, upn: str, operation: str = "Add member to role"
) -> dict[str, Any]:
    modified = [
        {
            "displayName": "Role.ObjectID",
            "oldValue": None,
            "newValue": '"62e90394-69f5-4237-9190-012177145e10"',
        },
        {"displayName": "Role.DisplayName", "oldValue": None, "newValue": '"Global Administrator"'},
        {"displayName": "Role.WellKnownObjectName", "oldValue": None, "newValue": '"TenantAdmins"'},
    ]
    return audit_row(event_id, operation, [user_target(object_id, upn, modified)], category="RoleManagement")


def group_removed(event_id: str, object_id: str, upn: str) -> dict[str, Any]:
    modified = [
        {"displayName": "Group.ObjectID", "oldValue": f'"{BG_GROUP}"', "newValue": None},
        {
            "displayName": "Group.DisplayName",
            "oldValue": '"CA exclusion - emergency access"',
            "newValue": None,
        },
    ]
    group = {"id": BG_GROUP, "displayName": "CA exclusion - emergency access", "type": "Group"}
    return audit_row(
        event_id,
        "Remove member from group",
        [user_target(object_id, upn, modified), group],
        category="GroupManagement",
    )


def policy(exclude_users: list[str], exclude_groups: list[str], state: str = "enabled") -> str:
    return json.dumps(
        {
            "id": "d63bcb96-c7de-4aaf-845d-49f3df67551c",
            "displayName": "Require MFA for admins",
            "state": state,
            "conditions": {
                "applications": {"includeApplications": ["All"], "excludeApplications": []},
                "users": {
                    "includeUsers": [],
                    "excludeUsers": exclude_users,
                    "includeGroups": [],
                    "excludeGroups": exclude_groups,
                    "includeRoles": ["62e90394-69f5-4237-9190-012177145e10"],
                    "excludeRoles": [],
                },
                "clientAppTypes": ["all"],
            },
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        }
    )


def policy_changed(
    event_id: str, old: str, new: str, operation: str = "Update conditional access policy"
) -> dict:
    target = {
        "id": "d63bcb96-c7de-4aaf-845d-49f3df67551c",
        "displayName": "Require MFA for admins",
        "type": "Policy",
        "modifiedProperties": [{"displayName": "ConditionalAccessPolicy", "oldValue": old, "newValue": new}],
    }
    return audit_row(event_id, operation, [target], category="Policy", service="Conditional Access")


SECURITY_INFO_DELETED = audit_row(
    "Authentication Methods_0f2b5d1c_AAA_1",
    "Admin deleted security info",
    [user_target(BG_ID, BG_UPN)],
    service="Authentication Methods",
    reason="Admin deleted Fido2 security key for user",
)
SELF_REGISTERED = audit_row(
    "Authentication Methods_0f2b5d1c_AAB_2",
    "User registered security info",
    [user_target(BG_ID, BG_UPN)],
    service="Authentication Methods",
    initiated_by={"user": {"id": BG_ID, "userPrincipalName": BG_UPN, "ipAddress": "203.0.113.50"}},
    reason="User registered Authenticator App with Notification and Code",
)
PASSWORD_RESET = audit_row("Directory_1a2b_AAC_3", "Reset user password", [user_target(BG_ID, BG_UPN)])
DISABLED = audit_row(
    "Directory_1a2b_AAD_4",
    "Update user",
    [
        user_target(
            BG_ID,
            BG_UPN,
            [
                {"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"},
                {
                    "displayName": "Included Updated Properties",
                    "oldValue": None,
                    "newValue": '"AccountEnabled"',
                },
            ],
        )
    ],
)
BY_APP = audit_row(
    "Directory_1a2b_AAE_5",
    "Delete user",
    [user_target(BG_ID, BG_UPN)],
    initiated_by={
        "app": {
            "appId": None,
            "displayName": "Provisioning Script",
            "servicePrincipalId": "5f0e1d2c-3b4a-4968-8776-655443322110",
        }
    },
)

CASES = (
    Case(
        name="an admin deletes the account's FIDO2 key",
        rows={"AuditLogs": [SECURITY_INFO_DELETED]},
        findings=(Expect(principal=BG_ID, event_ids=(SECURITY_INFO_DELETED["Id"],)),),
        context=WATCHING,
    ),
    Case(
        name="security info, password, disabled and deleted in one tick are one alert per account",
        rows={"AuditLogs": [SECURITY_INFO_DELETED, SELF_REGISTERED, PASSWORD_RESET, DISABLED, BY_APP]},
        findings=(
            Expect(
                principal=BG_ID,
                event_ids=(
                    SECURITY_INFO_DELETED["Id"],
                    SELF_REGISTERED["Id"],
                    PASSWORD_RESET["Id"],
                    DISABLED["Id"],
                    BY_APP["Id"],
                ),
            ),
        ),
        context=WATCHING,
    ),
    Case(
        name="the second account, known by UPN in any case, loses Global Administrator",
        rows={
            "AuditLogs": [
                role_added(
                    "Directory_9c_AAF_6", "", "BG-Admin2@Contoso.onmicrosoft.com", "Remove member from role"
                )
            ]
        },
        # no object id in the target: the account is known by its UPN, lower-cased
        findings=(Expect(principal=BG2_UPN, event_ids=("Directory_9c_AAF_6",)),),
        context=WATCHING,
    ),
    Case(
        name="the account taken out of its Conditional Access exclusion group",
        rows={"AuditLogs": [group_removed("Directory_9c_AAG_7", BG_ID, BG_UPN)]},
        findings=(Expect(principal=BG_ID, event_ids=("Directory_9c_AAG_7",)),),
        context=WATCHING,
    ),
    Case(
        name="a policy stops excluding the account",
        rows={"AuditLogs": [policy_changed("IPCGraph_AAH_8", policy([BG_ID], []), policy([], []))]},
        findings=(Expect(principal=BG_ID, event_ids=("IPCGraph_AAH_8",)),),
        context=WATCHING,
    ),
    Case(
        name="a policy stops excluding the account's group",
        rows={"AuditLogs": [policy_changed("IPCGraph_AAI_9", policy([], [BG_GROUP]), policy([], []))]},
        # a watched group is the finding's principal, named "group <object id>"
        findings=(Expect(principal=f"group {BG_GROUP}", event_ids=("IPCGraph_AAI_9",)),),
        context=WATCHING,
    ),
    Case(
        name="a new policy that names the account",
        rows={
            "AuditLogs": [
                policy_changed("IPCGraph_AAJ_10", "", policy([BG_ID], []), "Add conditional access policy")
            ]
        },
        findings=(Expect(principal=BG_ID, event_ids=("IPCGraph_AAJ_10",)),),
        context=WATCHING,
    ),
    Case(
        name="a policy change that leaves the account's exclusion as it was does not fire",
        rows={
            "AuditLogs": [
                policy_changed("IPCGraph_AAK_11", policy([BG_ID], []), policy([BG_ID], [], state="disabled"))
            ]
        },
        findings=(),
        context=WATCHING,
    ),
    Case(
        name="the same changes to an ordinary account do not fire",
        rows={
            "AuditLogs": [
                audit_row(
                    "Authentication Methods_AAL_12",
                    "Admin deleted security info",
                    [user_target(ALICE_ID, ALICE_UPN)],
                    service="Authentication Methods",
                ),
                audit_row("Directory_AAM_13", "Reset user password", [user_target(ALICE_ID, ALICE_UPN)]),
                role_added("Directory_AAN_14", ALICE_ID, ALICE_UPN),
                policy_changed("IPCGraph_AAO_15", policy([ALICE_ID], []), policy([], [])),
            ]
        },
        findings=(),
        context=WATCHING,
    ),
    Case(
        name="changes that already alerted are not alerted again",
        rows={"AuditLogs": [PASSWORD_RESET]},
        findings=(),
        context=Context(break_glass=ACCOUNTS, seen_event_ids=frozenset({PASSWORD_RESET["Id"]})),
    ),
    Case(name="no accounts configured, nothing fires", rows={"AuditLogs": [PASSWORD_RESET]}, findings=()),
)

DETECTION = Detection(
    id=ID,
    title="Break-glass account changed",
    severity=Severity.CRITICAL,
    mitre=("T1098", "T1556.006", "T1531"),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="event",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
