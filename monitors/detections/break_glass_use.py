"""break-glass-use: any use of a configured emergency-access account.

Why: break-glass accounts hold standing Global Administrator rights and are excluded from
most Conditional Access. Microsoft's guidance is to alert on every sign-in, at critical
severity. We also alert on failed sign-ins (a password spray against the keys to the tenant
is itself an incident), on non-interactive sign-ins (where the documented query is blind)
and on ARM operations made with the account. A failed sign-in's alert lists the successful
sign-ins of other accounts from the same IP address within an hour either side: a spray that
found another account, or the attacker's own session, is where the investigation starts.

Every event is alerted exactly once; a burst becomes one alert per account per tick.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitors.detections.auth_methods import account_key, methods, strength
from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    client_app_name,
    distinct,
    object_id,
    principal_facts,
    summarize_list,
    text,
    text_list,
    when,
)
from monitors.model import EventLine, Finding, Principal, Severity
from monitors.settings import BreakGlassAccounts

ID = "break-glass-use"

RUNBOOK = (
    "Call the account's owners now and confirm who is using it and why. An emergency with a "
    "known incident number is expected; anything else is an incident.",
    "Not expected: revoke the account's sessions, reset its credentials (FIDO2 key or certificate), and "
    "review the directory audit log and the Activity Log for everything it changed.",
    "Failed sign-ins: someone is guessing or spraying the password. Block the source IP addresses and check "
    "that the account signs in with FIDO2/passkey or a certificate only.",
    "A method flagged as weak (password, SMS, app notification): the account is not configured as guidance "
    "says; fix its authentication methods after the emergency.",
    "Record the outcome on the alert (acknowledge or resolve with a note). "
    "Break-glass alerts cannot be waived.",
)

FALSE_POSITIVES = (
    "The scheduled break-glass drill: it must still alert (that is what the drill tests); acknowledge it "
    "with the drill's reference.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlassEvent:
    event_id: str
    source: str
    time: datetime
    principal: Principal
    app: str | None
    ip_address: str | None
    location: str | None
    succeeded: bool
    result: str
    methods: tuple[str, ...]
    operation: str | None
    user_agent: str | None
    same_ip_successes: tuple[str, ...] = ()  # a failed sign-in's pivot: "upn time", other accounts

    @property
    def weak_method(self) -> bool:
        return any(strength(m) == "weak" for m in self.methods)


SOURCES = {
    "SigninLogs": "sign-in",
    "AADNonInteractiveUserSignInLogs": "non-interactive sign-in",
    "AzureActivity": "ARM operation",
}


def parse(row: Row) -> BreakGlassEvent:
    source = text(row, "Source", required=True)
    if source not in SOURCES:
        raise RowError(f"unexpected source {source!r}")
    result_type = text(row, "ResultType", limit=64) or ""
    if source == "AzureActivity":
        succeeded = result_type.lower() in ("success", "succeeded", "start", "started", "accept", "accepted")
        result = result_type or "unknown"
    else:
        succeeded = result_type == "0"
        description = text(row, "ResultDescription", limit=200)
        result = (
            "success" if succeeded else f"failure {result_type}" + (f": {description}" if description else "")
        )
    return BreakGlassEvent(
        event_id=text(row, "EventId", required=True, limit=64) or "",
        source=source,
        time=when(row, "TimeGenerated"),
        principal=Principal(
            user_id=object_id(row, "UserId"), user_principal_name=text(row, "UserPrincipalName")
        ),
        app=_app(source, text(row, "App", limit=128)),
        ip_address=text(row, "IPAddress", limit=64),
        location=(text(row, "Location", limit=128) or "").strip(", ") or None,
        succeeded=succeeded,
        result=result,
        methods=methods(text(row, "AuthenticationDetails", limit=20_000)),
        operation=text(row, "Operation", limit=200),
        user_agent=text(row, "UserAgent", limit=256),
        same_ip_successes=text_list(row, "SameIpSuccesses", limit=300),
    )


def _app(source: str, app: str | None) -> str | None:
    # Activity Log rows carry the client's app id, not its name.
    return client_app_name(app) if source == "AzureActivity" and app else app


def evaluate(events: Sequence[BreakGlassEvent], context: Context) -> list[Finding]:
    by_account: dict[str, list[BreakGlassEvent]] = {}
    for event in events:
        if event.event_id in context.seen_event_ids:
            continue  # alerted by an earlier tick (overlapping window, duplicate row, crash recovery)
        key = account_key(event.principal, context.break_glass)
        if key is not None:  # the query matched it; re-check here, never trust the row alone
            by_account.setdefault(key, []).append(event)
    return [_finding(sorted(group, key=lambda e: (e.time, e.event_id))) for group in by_account.values()]


def _finding(events: list[BreakGlassEvent]) -> Finding:
    principal = next((e.principal for e in events if e.principal.user_id), events[0].principal)
    failures = sum(not e.succeeded for e in events)
    weak = sum(e.weak_method for e in events)
    kinds = sorted({SOURCES[e.source] for e in events})
    pivot = distinct(s for e in events if not e.succeeded for s in e.same_ip_successes)
    others = (
        (("Other accounts signed in from the failing IPs (±1 h)", summarize_list(pivot)),) if failures else ()
    )
    return Finding(
        detection=ID,
        severity=Severity.CRITICAL,
        principal=principal,
        headline=f"Break-glass account used: {principal.label}",
        facts=(
            *principal_facts(principal),
            ("Events", f"{len(events)} ({', '.join(kinds)})"),
            ("Failed", f"{failures} of {len(events)}"),
            (
                "Weak sign-in method",
                f"{weak} event(s) used a method other than FIDO2/passkey or certificate"
                if weak
                else "none seen",
            ),
            *others,
            ("First", events[0].time.isoformat(timespec="seconds")),
            ("Last", events[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(e) for e in events),
        event_ids=tuple(e.event_id for e in events),
        first_time=events[0].time,
        last_time=events[-1].time,
    )


def _line(event: BreakGlassEvent) -> EventLine:
    fields = [("What", SOURCES[event.source]), ("Result", event.result)]
    if event.operation:
        fields.append(("Operation", event.operation))
    fields += [
        ("App", event.app or "unknown"),
        ("IP", event.ip_address or "unknown"),
        ("Location", event.location or "unknown"),
    ]
    if event.methods:
        marks = [f"{m} (weak)" if strength(m) == "weak" else m for m in event.methods]
        fields.append(("Method", ", ".join(marks)))
    if not event.succeeded and event.same_ip_successes:
        fields.append(("Same IP, other accounts (±1 h)", summarize_list(event.same_ip_successes, shown=3)))
    return EventLine(
        event_id=event.event_id,
        time=event.time,
        source=event.source,
        fields=tuple(fields),
        flagged=event.weak_method or not event.succeeded,
    )


# --- cases: raw sign-in and Activity Log rows, run through the KQL above by the tests

BG_ID = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
BG_UPN = "bg-admin1@contoso.onmicrosoft.com"
ACCOUNTS = BreakGlassAccounts(
    object_ids=frozenset({BG_ID}), upns=frozenset({"bg-admin2@contoso.onmicrosoft.com"})
)
FIDO2 = json.dumps([{"authenticationMethod": "FIDO2 security key", "succeeded": True}])
PASSWORD = json.dumps([{"authenticationMethod": "Password", "succeeded": False}])


def sign_in_row(
    event_id: str,
    user_id: str,
    upn: str,
    result: str = "0",
    details: str = FIDO2,
    at: str = "2026-11-20T03:12:00Z",
    ip: str = "203.0.113.7",
) -> dict:
    return {
        "TimeGenerated": at,
        "Id": event_id,
        "UserId": user_id,
        "UserPrincipalName": upn,
        "AppDisplayName": "Azure Portal",
        "AppId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "IPAddress": ip,
        "ResultType": result,
        "AuthenticationDetails": details,
        "LocationDetails": {"city": "Oslo", "countryOrRegion": "NO"},
    }


SPRAY_IP = "198.51.100.77"
SPRAYED_ID = "22222222-3333-4444-8555-666666666666"
SPRAYED_UPN = "bob@contoso.com"
# A failed break-glass sign-in, then the same IP signs in to another account 20 minutes later
# (listed), and again three hours later (outside the hour: not listed); a success from another
# IP is not listed either.
PIVOT_ROWS = {
    "SigninLogs": [
        sign_in_row("p1", BG_ID, BG_UPN, "50126", PASSWORD, at="2026-11-20T03:12:00Z", ip=SPRAY_IP),
        sign_in_row("p2", SPRAYED_ID, SPRAYED_UPN, at="2026-11-20T06:20:00Z", ip=SPRAY_IP),
    ],
    "AADNonInteractiveUserSignInLogs": [
        {
            **sign_in_row("p3", SPRAYED_ID, SPRAYED_UPN, at="2026-11-20T03:32:00Z", ip=SPRAY_IP),
            "LocationDetails": '{"city": "Lagos"}',
        },
        {
            **sign_in_row(
                "p4", "33333333-4444-4555-8666-777777777777", "carol@contoso.com", at="2026-11-20T03:13:00Z"
            ),
            "LocationDetails": "{}",
        },
    ],
}

CASES = (
    Case(
        name="a failed sign-in lists other accounts' successes from its IP within the hour",
        rows=PIVOT_ROWS,
        findings=(Expect(principal=BG_ID, event_ids=("p1",)),),  # the other accounts' rows are context
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        name="interactive FIDO2 sign-in",
        rows={"SigninLogs": [sign_in_row("s1", BG_ID, BG_UPN)]},
        findings=(Expect(principal=BG_ID, event_ids=("s1",)),),
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        name="failed password spray in the non-interactive log, matched by UPN in any case",
        rows={
            "AADNonInteractiveUserSignInLogs": [
                {
                    **sign_in_row(f"n{i}", "", "BG-Admin2@Contoso.onmicrosoft.com", "50126", PASSWORD),
                    "LocationDetails": '{"city": "Lagos"}',
                }
                for i in range(3)
            ]
        },
        findings=(Expect(principal="bg-admin2@contoso.onmicrosoft.com", event_ids=("n0", "n1", "n2")),),
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        name="a burst across tables is one alert per account",
        rows={
            "SigninLogs": [sign_in_row("s2", BG_ID, BG_UPN), sign_in_row("s3", BG_ID, BG_UPN)],
            "AzureActivity": [
                {
                    "TimeGenerated": "2026-11-20T03:15:00Z",
                    "EventDataId": "a1",
                    "Caller": BG_UPN,
                    "CategoryValue": "Administrative",
                    "ActivityStatusValue": "Success",
                    "OperationNameValue": "Microsoft.Authorization/roleAssignments/write",
                    "Claims": json.dumps(
                        {"http://schemas.microsoft.com/identity/claims/objectidentifier": BG_ID}
                    ),
                }
            ],
        },
        findings=(Expect(principal=BG_ID, event_ids=("s2", "s3", "a1")),),
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        # Caller is "the email address of the user ..., UPN claim, or SPN claim based on
        # availability" (Microsoft Learn, Azure Activity Log event schema): without claims, an
        # object id. Upper case, as some exports write GUIDs.
        name="an ARM operation matched only by Caller, the account's object id, without claims",
        rows={
            "AzureActivity": [
                {
                    "TimeGenerated": "2026-11-20T03:16:00Z",
                    "EventDataId": "a2",
                    "Caller": BG_ID.upper(),
                    "CategoryValue": "Administrative",
                    "ActivityStatusValue": "Success",
                    "OperationNameValue": "Microsoft.Authorization/roleAssignments/write",
                    "Claims": "",
                }
            ]
        },
        findings=(Expect(principal=BG_ID, event_ids=("a2",)),),
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        name="an ordinary user never fires",
        rows={"SigninLogs": [sign_in_row("s4", "11111111-2222-4333-8444-555555555555", "alice@contoso.com")]},
        findings=(),
        context=Context(break_glass=ACCOUNTS),
    ),
    Case(
        name="events that already alerted are not alerted again",
        rows={"SigninLogs": [sign_in_row("s6", BG_ID, BG_UPN)]},
        findings=(),
        context=Context(break_glass=ACCOUNTS, seen_event_ids=frozenset({"s6"})),
    ),
    Case(
        name="no accounts configured, nothing fires",
        rows={"SigninLogs": [sign_in_row("s5", BG_ID, BG_UPN)]},
        findings=(),
    ),
)

DETECTION = Detection(
    id=ID,
    title="Break-glass account used",
    severity=Severity.CRITICAL,
    mitre=("T1078.004",),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="event",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
