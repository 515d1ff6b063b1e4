"""policy-mfa-audit: Azure Policy's built-in MFA audit saw a user write without MFA.

Why: Microsoft ships two built-in policy definitions that check the token of every user's ARM
create/update (4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b) and delete (db4a9d17-db75-4f46-9fcb-
9f9526604417) for MFA. Assigned in audit mode (infra/ can assign them: `assignMfaAuditPolicies`)
they log a `Microsoft.Authorization/policies/audit/action` event in the Activity Log for each user
write that ran without MFA. That is precise evidence, from ARM itself, of exactly the writes that
mandatory MFA will refuse: the account will break when enforcement reaches it.

Severity: high (a write without MFA happened; under enforcement it would have failed).
Dedupe: once per user account (a baseline); every audit event in the tick is listed on the alert.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    client_app_name,
    distinct,
    new_groups,
    object_id,
    principal_facts,
    summarize_list,
    text,
    when,
)
from monitors.model import EventLine, Finding, Principal, Severity

ID = "policy-mfa-audit"

MFA_WRITE_POLICY = "4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b"
MFA_DELETE_POLICY = "db4a9d17-db75-4f46-9fcb-9f9526604417"
POLICY_KINDS = {MFA_WRITE_POLICY: "create/update without MFA", MFA_DELETE_POLICY: "delete without MFA"}

RUNBOOK = (
    "Who is it? A person working without MFA must register MFA (phishing-resistant for admins) "
    "and sign in again; after enforcement their writes will fail until they do.",
    "Automation (a script, Terraform, a pipeline) signed in as this user: migrate it to a workload "
    "identity (managed identity, federated credentials for CI/CD, or a service principal with a "
    "certificate) before enforcement breaks it; then remove the user's role assignments.",
    "The events name the resource and the CorrelationId: find the write itself in the Activity Log "
    "with that CorrelationId to see the operation and its result.",
    "Accepted for now (awaiting migration)? Record a waiver with an owner and an expiry.",
)

FALSE_POSITIVES = (
    "None known for the events themselves: the policy evaluates the write's own token. "
    "A policy assignment in audit mode across many users makes the first day loud (one alert per "
    "user who writes without MFA); that is the readiness list, not noise.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyAudit:
    event_id: str
    time: datetime
    principal: Principal
    definitions: tuple[str, ...]  # the built-in MFA definitions this event reports
    assignments: tuple[str, ...]  # their assignment names (or ids)
    resource: str | None
    correlation_id: str | None
    ip_address: str | None
    client_app_id: str | None
    auth_methods: str | None
    subscription: str | None


def _policies(raw: str | None) -> list[dict[str, Any]]:
    """Properties.policies: JSON text holding a list of {policyDefinitionName, policyAssignmentName, ...}."""
    if not raw:
        raise RowError("no policies")
    try:
        value = json.loads(raw)
    except ValueError:
        raise RowError("policies is not valid JSON") from None
    if isinstance(value, str):  # exported twice-encoded
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError("policies is not valid JSON") from None
    if not isinstance(value, list):
        raise RowError("policies is not a list")
    return [p for p in value if isinstance(p, dict)]


def _definition(policy: dict[str, Any]) -> str | None:
    for field in ("policyDefinitionName", "policyDefinitionId"):
        value = str(policy.get(field) or "").lower()
        for definition in POLICY_KINDS:
            if definition in value:
                return definition
    return None


def parse(row: Row) -> PolicyAudit:
    upn = text(row, "UserPrincipalName", limit=256)
    user_id = object_id(row, "UserId")
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    matched = [(d, p) for p in _policies(text(row, "Policies", limit=20_000)) if (d := _definition(p))]
    if not matched:
        raise RowError("no built-in MFA policy among the policies")
    assignments = [
        str(p.get("policyAssignmentName") or p.get("policyAssignmentId") or "")[:200] for _, p in matched
    ]
    return PolicyAudit(
        event_id=text(row, "EventId", required=True, limit=64) or "",
        time=when(row, "TimeGenerated"),
        principal=Principal(user_id=user_id, user_principal_name=upn.lower() if upn else None),
        definitions=tuple(dict.fromkeys(d for d, _ in matched)),
        assignments=tuple(dict.fromkeys(a for a in assignments if a)),
        resource=text(row, "Resource", limit=400),
        correlation_id=text(row, "CorrelationId", limit=64),
        ip_address=text(row, "IPAddress", limit=64),
        client_app_id=text(row, "ClientAppId", limit=64),
        auth_methods=text(row, "AuthMethods", limit=64),
        subscription=text(row, "SubscriptionId", limit=64),
    )


def evaluate(audits: Sequence[PolicyAudit], context: Context) -> list[Finding]:
    return [
        _finding(group) for group in new_groups(audits, lambda a: a.principal.key, context.known_principals)
    ]


def _finding(audits: list[PolicyAudit]) -> Finding:
    principal = next((a.principal for a in audits if a.principal.user_id), audits[0].principal)
    kinds = distinct([POLICY_KINDS[d] for a in audits for d in a.definitions])
    tools = distinct([client_app_name(a.client_app_id) for a in audits if a.client_app_id])
    methods = distinct([a.auth_methods for a in audits])
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"User write without MFA, audited by Azure Policy: {principal.label}",
        facts=(
            *principal_facts(principal, "User"),
            ("Audited writes", f"{len(audits)} ({', '.join(kinds)})"),
            ("Policy assignments", summarize_list(distinct([s for a in audits for s in a.assignments]))),
            ("Resources", summarize_list(distinct([a.resource for a in audits]), shown=3)),
            ("Token methods", summarize_list(methods) if methods else "not in the log"),
            ("Tools", summarize_list(tools) if tools else "unknown"),
            ("IP addresses", summarize_list(distinct([a.ip_address for a in audits]))),
            ("Subscriptions", summarize_list(distinct([a.subscription for a in audits]), shown=3)),
            ("First", audits[0].time.isoformat(timespec="seconds")),
            ("Last", audits[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(a) for a in audits),
        event_ids=tuple(a.event_id for a in audits),
        first_time=audits[0].time,
        last_time=audits[-1].time,
    )


def _line(audit: PolicyAudit) -> EventLine:
    fields = [
        ("What", "; ".join(POLICY_KINDS[d] for d in audit.definitions)),
        ("Resource", audit.resource or "unknown"),
        ("Assignment", ", ".join(audit.assignments) or "unknown"),
        ("IP", audit.ip_address or "unknown"),
    ]
    if audit.correlation_id:
        fields.append(("CorrelationId", audit.correlation_id))
    return EventLine(
        event_id=audit.event_id, time=audit.time, source="AzureActivity", fields=tuple(fields), flagged=True
    )


# --- cases: raw AzureActivity Policy rows (the shape the built-in audit policies log), via the KQL

USER_ID = "9b117c67-170e-4aed-9702-658b3fddc889"
USER_UPN = "AdeleV@contoso.com"
SUB = "8f153238-e602-427e-a7c0-3043fbe50918"
ENTITY = f"/subscriptions/{SUB}/resourceGroups/Sentinel-MainRG/providers/Microsoft.Web/sites/Okta-new"


def policies_text(definition: str) -> str:
    return json.dumps(
        [
            {
                "policyDefinitionId": f"/providers/Microsoft.Authorization/policyDefinitions/{definition}",
                "policyAssignmentId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
                "policyAssignments/audit-user-mfa",
                "policyAssignmentName": "audit-user-mfa",
                "policyDefinitionName": definition,
                "policyDefinitionEffect": "Audit",
            }
        ]
    )


def audit_row(event_id: str, definition: str = MFA_WRITE_POLICY, **extra: object) -> dict:
    properties = {
        "isComplianceCheck": "False",
        "policies": policies_text(definition),
        "eventCategory": "Policy",
        "entity": ENTITY,
        "message": "Microsoft.Authorization/policies/audit/action",
        "caller": USER_UPN,
    }
    return {
        "TimeGenerated": "2026-11-20T10:00:03Z",
        "EventDataId": event_id,
        "CorrelationId": "a2bba39a-d17f-404d-9919-e59039e73ad4",
        "CategoryValue": "Policy",
        "Level": "Warning",
        "OperationNameValue": "Microsoft.Authorization/policies/audit/action",
        "OperationName": "'audit' Policy action.",
        "ActivityStatusValue": "Success",
        "Caller": USER_UPN,
        "CallerIpAddress": "37.142.150.162",
        "SubscriptionId": SUB,
        "Claims": json.dumps(
            {
                "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
                "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": USER_UPN,
                "http://schemas.microsoft.com/identity/claims/objectidentifier": USER_ID,
            }
        ),
        "Properties": json.dumps(properties),
        **extra,
    }


CASES = (
    Case(
        name="a create/update and a delete audited for one user make one alert",
        rows={
            "AzureActivity": [
                audit_row("p1"),
                audit_row("p2", MFA_DELETE_POLICY),
                audit_row("p2", MFA_DELETE_POLICY),
            ]
        },
        findings=(Expect(principal=USER_ID, event_ids=("p1", "p2")),),
    ),
    Case(
        name="an audit event without token claims names the user by Caller",
        rows={"AzureActivity": [audit_row("p3", Claims="")]},
        findings=(Expect(principal=USER_UPN.lower(), event_ids=("p3",)),),
    ),
    Case(
        name="other policies' audit events do not fire",
        rows={"AzureActivity": [audit_row("p4", "0a914e76-4921-4c19-b460-a2d36003525a")]},
        findings=(),
    ),
    Case(
        name="the user's Administrative write itself is not an audit event",
        rows={
            "AzureActivity": [
                audit_row(
                    "p5",
                    CategoryValue="Administrative",
                    OperationNameValue="MICROSOFT.WEB/SITES/WRITE",
                    Properties=json.dumps({"entity": ENTITY}),
                )
            ]
        },
        findings=(),
    ),
    Case(
        name="a user already alerted does not fire again",
        rows={"AzureActivity": [audit_row("p6")]},
        findings=(),
        context=Context(known_principals=frozenset({USER_ID})),
    ),
)

DETECTION = Detection(
    id=ID,
    title="User write without MFA, audited by Azure Policy",
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
