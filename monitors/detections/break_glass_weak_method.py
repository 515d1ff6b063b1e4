"""break-glass-weak-method: an emergency-access account that may not work the day it is needed.

Why: Microsoft's guidance for break-glass accounts is phishing-resistant sign-in (FIDO2/passkey
or certificate) and a regular drill. Mandatory MFA makes both matter more: a break-glass
account that still signs in with a password and SMS or an app notification depends on the
very phone, person or MFA service that the emergency may have taken away, and an account
nobody has signed in to for months may have an expired certificate, a lost key or a
forgotten PIN. Two signals, one detection:

1. weak method: a sign-in of a configured account (BREAK_GLASS_ACCOUNTS, either sign-in table,
   success or failure) with a step that *succeeded* using anything but FIDO2/passkey,
   certificate or Windows Hello. A password step that succeeded before MFA failed still proves
   the account has a working password. "Previously satisfied" (a claim from an earlier token)
   says nothing either way. The rules are shared with break-glass-use (auth_methods.py).
2. drill overdue: a configured account without a successful interactive sign-in in the last
   BREAK_GLASS_DRILL_DAYS days. This reads weeks of sign-ins, so it runs once a day, in the
   tick whose window crosses UTC midnight (not every five minutes).

Dedupe: once per account per drill period for each signal. Periods are BREAK_GLASS_DRILL_DAYS
long, counted from 1970-01-01, so an account that stays untested is reminded once a period,
and the weak method of every sign-in in a burst makes one alert. Each sign-in still raises its
own break-glass-use alert as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from monitors.detections.auth_methods import account_key, methods, strength, weak
from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    count,
    object_id,
    principal_facts,
    summarize_list,
    text,
    when,
)
from monitors.model import EventLine, Finding, Principal, Severity
from monitors.settings import BreakGlassAccounts

ID = "break-glass-weak-method"
EPOCH = date(1970, 1, 1)

RUNBOOK = (
    "Weak method: confirm with the account's owners who signed in and why (break-glass-use raised "
    "its own alert for the sign-in itself).",
    "Then fix the account's authentication methods: register two FIDO2 keys or passkeys (or "
    "certificate-based authentication), stored apart; remove password-only, SMS, voice and "
    "app-notification methods; make an authentication-strength Conditional Access policy require "
    "phishing-resistant MFA for these accounts.",
    "Drill overdue: run the break-glass drill now: sign in with the account's FIDO2 key or "
    "certificate, check its Global Administrator role is still active, sign out, and record the "
    "drill (break-glass-use alerts on it: acknowledge that alert with the drill's reference).",
    "If the drill fails (key lost, certificate expired, PIN forgotten): fix it before anything "
    "else; until then the tenant has one emergency path fewer than it thinks.",
    "Break-glass alerts cannot be waived.",
)

FALSE_POSITIVES = (
    "The drill is done with the other break-glass account on purpose (one account per drill): "
    "the untested one is still untested; drill both.",
    "The workspace keeps fewer days than BREAK_GLASS_DRILL_DAYS (30 days is the default "
    "retention): an older drill is out of sight. Set the interval to at most the retention.",
    "Methods a future sign-in log names differently from today's (e.g. a new passkey flavour) "
    "may read as weak until auth_methods.py learns the name.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlassObservation:
    kind: str  # "sign-in" or "drill"
    event_id: str
    source: str
    time: datetime
    user_id: str | None
    user_principal_name: str | None
    app: str | None
    ip_address: str | None
    succeeded: bool
    result: str
    methods: tuple[str, ...]  # steps that succeeded
    user_agent: str | None
    as_of: datetime
    drill_days: int

    @property
    def weak_methods(self) -> tuple[str, ...]:
        return weak(self.methods)

    @property
    def period_start(self) -> date:
        """First day of the drill period this observation falls in."""
        moment = self.time if self.kind == "sign-in" else self.as_of
        days = (moment.date() - EPOCH).days
        return EPOCH + timedelta(days=days - days % self.drill_days)

    @property
    def principal(self) -> Principal:
        what = "weak method" if self.kind == "sign-in" else "drill overdue"
        return Principal(
            user_id=self.user_id,
            user_principal_name=self.user_principal_name,
            episode=f"{what}, period from {self.period_start.isoformat()}",
        )


def parse(row: Row) -> BreakGlassObservation:
    kind = text(row, "Kind", required=True, limit=16)
    if kind not in ("sign-in", "drill"):
        raise RowError(f"unexpected kind {kind!r}")
    user_id = object_id(row, "UserId")
    upn = (text(row, "UserPrincipalName", limit=256) or "").lower() or None
    if not user_id and not upn:
        raise RowError("neither an object id nor a UPN")
    drill_days = count(row, "DrillDays")
    if drill_days < 1:
        raise RowError("DrillDays is not a positive number of days")
    result_type = text(row, "ResultType", limit=64) or ""
    succeeded = result_type == "0"
    description = text(row, "ResultDescription", limit=200)
    as_of = when(row, "AsOf")
    event_id = text(row, "EventId", limit=64) if kind == "sign-in" else None
    if kind == "sign-in" and not event_id:
        raise RowError("a sign-in without its Id")
    return BreakGlassObservation(
        kind=kind,
        event_id=event_id or f"drill|{user_id or upn}|{as_of.date().isoformat()}",
        source=text(row, "Source", limit=64) or "SigninLogs",
        time=when(row, "TimeGenerated"),
        user_id=user_id,
        user_principal_name=upn,
        app=text(row, "App", limit=128),
        ip_address=text(row, "IPAddress", limit=64),
        succeeded=succeeded,
        result="success"
        if succeeded
        else f"failure {result_type}" + (f": {description}" if description else ""),
        methods=methods(text(row, "AuthenticationDetails", limit=20_000), succeeded_only=True),
        user_agent=text(row, "UserAgent", limit=256),
        as_of=as_of,
        drill_days=drill_days,
    )


def evaluate(observations: Sequence[BreakGlassObservation], context: Context) -> list[Finding]:
    groups: dict[str, list[BreakGlassObservation]] = {}
    for o in observations:
        if (
            account_key(
                Principal(user_id=o.user_id, user_principal_name=o.user_principal_name), context.break_glass
            )
            is None
        ):
            continue  # the query matched it; re-check here, never trust the row alone
        if o.kind == "sign-in" and not o.weak_methods:
            continue
        key = o.principal.key
        if key not in context.known_principals:
            groups.setdefault(key, []).append(o)
    findings = []
    for group in groups.values():
        group.sort(key=lambda o: (o.time, o.event_id))
        findings.append(_weak(group) if group[0].kind == "sign-in" else _drill(group[-1]))
    return findings


def _weak(events: list[BreakGlassObservation]) -> Finding:
    first = next((e for e in events if e.user_id), events[0])
    principal = first.principal
    found = tuple(dict.fromkeys(m for e in events for m in e.weak_methods))
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"Break-glass account signs in with a weak method: {principal.label}",
        facts=(
            *principal_facts(principal),
            ("Weak methods that worked", summarize_list(found)),
            ("Sign-ins", f"{len(events)} ({sum(e.succeeded for e in events)} succeeded)"),
            ("Expected", "FIDO2 security key, passkey or certificate only"),
            ("First", events[0].time.isoformat(timespec="seconds")),
            ("Last", events[-1].time.isoformat(timespec="seconds")),
        ),
        events=tuple(_line(e) for e in events),
        event_ids=tuple(e.event_id for e in events),
        first_time=events[0].time,
        last_time=events[-1].time,
    )


def _line(event: BreakGlassObservation) -> EventLine:
    marks = [f"{m} (weak)" if strength(m) == "weak" else m for m in event.methods]
    return EventLine(
        event_id=event.event_id,
        time=event.time,
        source=event.source,
        fields=(
            ("Result", event.result),
            ("Method", ", ".join(marks) or "none recorded"),
            ("App", event.app or "unknown"),
            ("IP", event.ip_address or "unknown"),
        ),
        flagged=True,
    )


def _drill(o: BreakGlassObservation) -> Finding:
    principal = o.principal
    since = o.as_of - timedelta(days=o.drill_days)
    return Finding(
        detection=ID,
        severity=Severity.MEDIUM,
        principal=principal,
        headline=f"Break-glass drill overdue: {principal.label} has not signed in for {o.drill_days} days",
        facts=(
            ("Account", principal.label),
            ("Object id", principal.user_id or "configured by UPN"),
            ("Last successful interactive sign-in", f"none since {since.isoformat(timespec='minutes')}"),
            ("Drill interval", f"{o.drill_days} days (BREAK_GLASS_DRILL_DAYS)"),
            ("Checked", o.as_of.isoformat(timespec="seconds")),
            ("Next reminder", "next drill period, if still not drilled"),
        ),
        events=(),
        event_ids=(o.event_id,),
        first_time=since,
        last_time=o.as_of,
    )


# --- cases: raw sign-in rows, run through the KQL above by tests/unit/test_detections.py

BG_ID = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
BG_UPN = "bg-admin1@contoso.onmicrosoft.com"
BG2_UPN = "bg-admin2@contoso.onmicrosoft.com"
ACCOUNTS = BreakGlassAccounts(object_ids=frozenset({BG_ID}), upns=frozenset({BG2_UPN}))
ONLY_BG1 = BreakGlassAccounts(object_ids=frozenset({BG_ID}))


def details(*steps: tuple[str, bool]) -> str:
    return json.dumps([{"authenticationMethod": m, "succeeded": ok} for m, ok in steps])


# The drill looks back from the present, so its sample sign-ins are dated relative to it.
RECENT = (datetime.now(UTC) - timedelta(days=12)).isoformat()


def sign_in(event_id: str, auth: str, result: str = "0", upn: str = BG_UPN, user_id: str = BG_ID) -> dict:
    return {
        "TimeGenerated": "2026-11-20T03:12:00Z",
        "Id": event_id,
        "UserId": user_id,
        "UserPrincipalName": upn,
        "AppDisplayName": "Azure Portal",
        "IPAddress": "203.0.113.7",
        "ResultType": result,
        "AuthenticationDetails": auth,
    }


def drill_row(event_id: str, user_id: str, upn: str, at: datetime) -> dict:
    """A successful FIDO2 drill sign-in at `at`, ingested then: tests use it for a tenant that drills."""
    row = sign_in(event_id, details(("FIDO2 security key", True)), upn=upn, user_id=user_id)
    return {**row, "TimeGenerated": at.isoformat(), "_IngestionTime": at.isoformat()}


FIDO2 = details(("FIDO2 security key", True))
PASSWORD_SMS = details(("Password", True), ("Text message", True))
SPRAYED = details(("Password", False))
NO_DRILL = Context(break_glass=ACCOUNTS, drill_check_due=False)

CASES = (
    Case(
        name="drill overdue: no successful sign-in of the account in the interval",
        rows={"SigninLogs": [sign_in("d1", SPRAYED, result="50126")]},
        findings=(
            Expect(principal=BG_ID, event_ids=(f"drill|{BG_ID}|{datetime.now(UTC).date().isoformat()}",)),
        ),
        context=Context(break_glass=ONLY_BG1, drill_check_due=True),
    ),
    Case(
        name="drilled recently with FIDO2: nothing to say",
        rows={"SigninLogs": [{**sign_in("d2", FIDO2), "TimeGenerated": RECENT}]},
        findings=(),
        context=Context(break_glass=ONLY_BG1, drill_check_due=True),
    ),
    Case(
        name="the drill check is not due in this window",
        rows={"SigninLogs": [sign_in("d3", SPRAYED, result="50126")]},
        findings=(),
        context=NO_DRILL,
    ),
    Case(
        name="FIDO2 in both tables, and a failed password spray, are not weak",
        rows={
            "SigninLogs": [sign_in("s1", FIDO2), sign_in("s2", SPRAYED, result="50126")],
            "AADNonInteractiveUserSignInLogs": [sign_in("n1", details(("Previously satisfied", True)))],
        },
        findings=(),
        context=NO_DRILL,
    ),
    Case(
        name="an ordinary user with a password never fires",
        rows={
            "SigninLogs": [
                sign_in(
                    "s3",
                    PASSWORD_SMS,
                    upn="alice@contoso.com",
                    user_id="11111111-2222-4333-8444-555555555555",
                )
            ]
        },
        findings=(),
        context=NO_DRILL,
    ),
    Case(
        name="a weak method already alerted this period is not alerted again",
        rows={"SigninLogs": [sign_in("s4", PASSWORD_SMS)]},
        findings=(),
        context=Context(
            break_glass=ACCOUNTS,
            drill_check_due=False,
            known_principals=frozenset({f"{BG_ID}|weak method, period from 2026-09-04"}),
        ),
    ),
    Case(
        name="password and SMS, and a working password before failed MFA: one alert per account",
        rows={
            "SigninLogs": [
                sign_in("s5", PASSWORD_SMS),
                sign_in(
                    "s6", details(("Password", True), ("Mobile app notification", False)), result="500121"
                ),
            ],
            "AADNonInteractiveUserSignInLogs": [
                sign_in(
                    "n2", details(("Password", True)), upn="BG-Admin2@Contoso.onmicrosoft.com", user_id=""
                )
            ],
        },
        findings=(
            Expect(principal=BG_ID, event_ids=("s5", "s6")),
            Expect(principal=BG2_UPN, event_ids=("n2",)),
        ),
        context=NO_DRILL,
    ),
)

DETECTION = Detection(
    id=ID,
    title="Break-glass account with a weak sign-in method or an overdue drill",
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
