"""source-silent: the monitor is blind; a log source stopped delivering, or queries keep failing.

Why: every other detection only sees what reaches the workspace. If a table that receives
rows goes quiet (the diagnostic setting was deleted or changed, an export broke, a licence
lapsed) or the workspace cannot be queried (the identity lost its role, the workspace moved),
the monitor raises nothing, which looks exactly like a quiet tenant. Deleting or weakening the
diagnostic setting is also what an attacker does first. Three signals, one detection:

1. silence: a table that received rows in the lookback (the late-arrival window, 48 h or
   more) whose newest row arrived longer ago than its threshold (SOURCE_SILENCE_HOURS).
   Measured by ingestion time over the whole lookback, not the tick's window.
   missing: a table with no row in the whole lookback while another watched table has been
   delivering for a day or more. Its category is not exported (the Entra diagnostic setting
   lacks NonInteractiveUserSignInLogs, say: non-interactive break-glass use is then invisible),
   or it went quiet before the lookback (the monitor was deployed late, or was down). Once per
   table; the alert names the category to enable. A table not exported on purpose is set to
   0 hours. Without another table delivering (a new workspace, a monitor deployed minutes ago)
   an empty table says nothing yet.
2. a diagnostic setting deleted or written (`Microsoft.Insights/diagnosticSettings/delete` and
   `/write`, and `microsoft.aadiam/diagnosticSettings/...` for the Entra ID export), whoever did
   it: a write can remove a category or move the destination, and the Activity Log does not say
   which, so every write is looked at.
3. the tick itself: queries failed SOURCE_SILENT_FAILED_TICKS ticks in a row. The query cannot
   report its own failure, so the tick builds that finding (`query_failure_finding`, raised by
   monitors/blindness.py).

Dedupe: once per episode. The principal is the table (or the workspace, or whoever deleted the
setting) and the episode names when the silence began (the newest row's ingestion time), which
operation deleted or wrote the setting, or when queries started failing. The same silence alerts once
however many ticks see it; rows that come back end the episode, and the next silence alerts
again. Replay (`python -m monitors replay`) runs the diagnostic-setting part only: an export has
no ingestion history to be silent in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from monitors.detections.base import (
    Case,
    Context,
    Detection,
    Expect,
    Row,
    RowError,
    count,
    object_id,
    summarize_list,
    text,
    text_list,
    when,
)
from monitors.model import EventLine, Finding, Principal, Severity
from monitors.settings import WATCHED_TABLES

ID = "source-silent"
QUERY_FAILURES = "queries failing"

RUNBOOK = (
    "Until this is fixed the monitor cannot see break-glass use or new user accounts writing to ARM: "
    "check those by hand in the portal (Entra sign-in logs, Activity Log) meanwhile.",
    "A silent table: open the workspace's Logs blade and run `<Table> | summarize max(ingestion_time())`. "
    "Then check the diagnostic setting that exports it: Entra ID > Monitoring > Diagnostic settings "
    "(SigninLogs, AADNonInteractiveUserSignInLogs, AuditLogs) or the subscription's Activity log > "
    "Export (AzureActivity). Is it still there, still pointing at this workspace, still with the "
    "category on?",
    "A deleted or changed diagnostic setting: find out who did it and why (caller below). For a change, "
    "open the setting and check that every category the monitor reads is still on and still goes to "
    "this workspace (docs/deploy.md lists them). Not planned: treat it as an incident: restore the "
    "setting, revoke the caller's sessions and review what else they did while logging was off.",
    "Queries failing: read the errors below. 403: the monitor's managed identity lost Log Analytics "
    "Reader on the workspace; 404: the workspace id is wrong or the workspace moved; 429/timeouts: "
    "the workspace is overloaded (it recovers by itself; a long episode needs a look).",
    "A second too dense to read: more matching rows arrived in one second than one query result "
    "holds (a password spray, very long user agents). The monitor read everything before and after "
    "it. Read that second by hand: run the detection's query (monitors/detections/<id>.kql) in the "
    "Logs blade over the ingestion times shown, with `| take 1000` pages. For break-glass-use, treat "
    "the burst itself as an incident.",
    "A table this tenant does not export on purpose (no P1 licence for non-interactive sign-ins): "
    "set its hours to 0 in SOURCE_SILENCE_HOURS. Source-silent cannot be waived.",
)

FALSE_POSITIVES = (
    "A small or quiet tenant: no ARM writes for hours (nights, weekends) leaves AzureActivity quiet; "
    "raise its hours in SOURCE_SILENCE_HOURS to what the tenant's quietest stretch needs.",
    "A newly created diagnostic setting can take hours to deliver its first rows.",
    "A planned change of diagnostic settings (moving to another workspace) deletes the old one; "
    "deploying infra/ (azd up) writes the settings it manages, which alerts too: acknowledge it.",
    "A Log Analytics service incident delays ingestion for every table at once.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSignal:
    kind: str  # "silence", "diagnostic-setting-deleted" or "diagnostic-setting-changed"
    table: str
    as_of: datetime  # the tick's window end: silence is measured up to here
    last_ingested: datetime | None  # silence: the newest row's ingestion time
    hours: int  # the table's threshold
    lookback_start: datetime
    event_ids: tuple[str, ...]
    operation_id: str | None
    operation: str | None
    statuses: tuple[str, ...]
    caller: str | None
    user_id: str | None
    target: str | None
    ip_address: str | None
    time: datetime

    @property
    def principal(self) -> Principal:
        """What the finding is about, with the episode that makes it alert once."""
        if self.kind == "silence" and self.last_ingested:
            episode = f"silent after {self.last_ingested.isoformat(timespec='seconds')}"
            return Principal(user_id=None, user_principal_name=self.table, episode=episode)
        if self.kind == "missing":
            return Principal(user_id=None, user_principal_name=self.table, episode=MISSING_EPISODE)
        caller = self.caller or ""
        user_id = self.user_id or _guid_or_none(caller)
        return Principal(
            user_id=user_id,
            user_principal_name=caller.lower() if "@" in caller else None,
            episode=f"diagnostic setting {SETTING_VERBS[self.kind]} {self.operation_id}",
        )


SETTING_VERBS = {"diagnostic-setting-deleted": "deleted", "diagnostic-setting-changed": "written"}
KINDS = ("silence", "missing", *SETTING_VERBS)
MISSING_EPISODE = "no rows in the lookback"


def parse(row: Row) -> SourceSignal:
    kind = text(row, "Kind", required=True, limit=64)
    if kind not in KINDS:
        raise RowError(f"unexpected kind {kind!r}")
    table = text(row, "SourceTable", required=True, limit=64) or ""
    if table not in WATCHED_TABLES:
        raise RowError(f"unexpected table {table!r}")
    last = row.get("LastIngested")
    event_ids = text_list(row, "EventIds", limit=64)
    operation_id = text(row, "OperationId", limit=128)
    if kind in SETTING_VERBS and not (event_ids and operation_id):
        raise RowError("a diagnostic setting change without its operation")
    if kind == "silence" and last in (None, "", "None"):
        raise RowError("a silence without the newest row's ingestion time")
    return SourceSignal(
        kind=kind,
        table=table,
        as_of=when(row, "AsOf"),
        last_ingested=None if last in (None, "", "None") else when(row, "LastIngested"),
        hours=count(row, "Hours"),
        lookback_start=when(row, "LookbackStart"),
        event_ids=event_ids,
        operation_id=operation_id,
        operation=text(row, "Operation", limit=200),
        statuses=text_list(row, "Statuses", limit=32),
        caller=text(row, "Caller", limit=256),
        user_id=object_id(row, "UserId"),
        target=text(row, "Target", limit=400),
        ip_address=text(row, "IPAddress", limit=64),
        time=when(row, "TimeGenerated"),
    )


def _guid_or_none(value: str) -> str | None:
    try:
        return object_id({"v": value}, "v")
    except RowError:
        return None


def evaluate(signals: Sequence[SourceSignal], context: Context) -> list[Finding]:
    latest: dict[str, SourceSignal] = {}  # per table, the newest view (a split window gives several)
    settings: dict[str, SourceSignal] = {}
    for signal in signals:
        if signal.kind in ("silence", "missing"):
            if signal.table not in latest or signal.as_of > latest[signal.table].as_of:
                latest[signal.table] = signal
        else:
            seen = settings.get(signal.principal.key)
            settings[signal.principal.key] = _merge(seen, signal) if seen else signal
    watched = {table for table, hours in context.silence_hours if hours > 0}
    findings = [
        _silence(s) if s.kind == "silence" else _missing(s)
        for s in latest.values()
        if s.table in watched and s.principal.key not in context.known_principals
    ]
    findings += [_setting_changed(s) for key, s in settings.items() if key not in context.known_principals]
    return findings


def _merge(a: SourceSignal, b: SourceSignal) -> SourceSignal:
    return replace(
        a,
        event_ids=tuple(dict.fromkeys(a.event_ids + b.event_ids)),
        statuses=tuple(dict.fromkeys(a.statuses + b.statuses)),
        time=min(a.time, b.time),
    )


def _silence(signal: SourceSignal) -> Finding:
    since = signal.last_ingested or signal.lookback_start  # parse refuses a silence without it
    quiet = _duration(signal.as_of - since)
    newest = since.isoformat(timespec="seconds")
    principal = signal.principal
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"Log source silent: {signal.table} has received no rows for {quiet}",
        facts=(
            ("Table", signal.table),
            ("Silent for", quiet),
            ("Newest row ingested", newest),
            ("Threshold", f"{signal.hours} h (SOURCE_SILENCE_HOURS)"),
            ("Checked up to", signal.as_of.isoformat(timespec="seconds")),
            ("Blind to", _blind_to(signal.table)),
        ),
        events=(),
        event_ids=(f"{signal.table}|{principal.episode}",),
        first_time=since,
        last_time=signal.as_of,
    )


# The diagnostic category that fills each watched table, and where it is switched on.
CATEGORIES = {
    "SigninLogs": "SignInLogs in Entra ID's diagnostic setting",
    "AADNonInteractiveUserSignInLogs": "NonInteractiveUserSignInLogs in Entra ID's diagnostic setting",
    "AuditLogs": "AuditLogs in Entra ID's diagnostic setting",
    "AzureActivity": "the Administrative category of the subscription's Activity log export",
}


def _missing(signal: SourceSignal) -> Finding:
    principal = signal.principal
    since = signal.lookback_start.isoformat(timespec="seconds")
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"Log source missing: {signal.table} has no rows while other tables do; "
        f"enable {CATEGORIES[signal.table]}",
        facts=(
            ("Table", signal.table),
            ("No rows since", f"{since} (the whole lookback)"),
            ("Enable", f"{CATEGORIES[signal.table]} (docs/deploy.md)"),
            ("Or", "it went quiet before the lookback, while the monitor was not running: check the setting"),
            ("Blind to", _blind_to(signal.table)),
            ("Not exported on purpose", f"set {signal.table}=0 in SOURCE_SILENCE_HOURS"),
        ),
        events=(),
        event_ids=(f"{signal.table}|{principal.episode}",),
        first_time=signal.lookback_start,
        last_time=signal.as_of,
    )


def _blind_to(table: str) -> str:
    return {
        "SigninLogs": "interactive sign-ins, break-glass sign-ins among them",
        "AADNonInteractiveUserSignInLogs": "non-interactive sign-ins (refresh tokens, scripts)",
        "AzureActivity": "ARM writes by user accounts, and changes to diagnostic settings",
        "AuditLogs": "changes to the break-glass accounts (methods, password, roles, Conditional Access)",
    }[table]


def _setting_changed(signal: SourceSignal) -> Finding:
    principal = signal.principal
    verb = SETTING_VERBS[signal.kind]
    who = principal.label if principal.user_id or principal.user_principal_name else "unknown caller"
    failed = all(s.lower() in ("failure", "failed") for s in signal.statuses) if signal.statuses else False
    headline = (
        f"Diagnostic setting deleted by {who}: logs may no longer reach the workspace"
        if verb == "deleted"
        else f"Diagnostic setting written by {who}: check its categories and destination"
    )
    return Finding(
        detection=ID,
        severity=Severity.MEDIUM if failed else Severity.HIGH,
        principal=principal,
        headline=headline,
        facts=(
            (f"{verb.capitalize()} by", who),
            ("Object id", principal.user_id or "not in the log"),
            ("Setting", signal.target or "unknown"),
            ("Operation", signal.operation or "unknown"),
            ("Status", summarize_list(signal.statuses)),
            ("IP address", signal.ip_address or "unknown"),
            ("When", signal.time.isoformat(timespec="seconds")),
        ),
        events=(
            EventLine(
                event_id=signal.event_ids[0],
                time=signal.time,
                source="AzureActivity",
                fields=(
                    ("What", f"diagnostic setting {verb}"),
                    ("Result", summarize_list(signal.statuses)),
                    ("Target", signal.target or "unknown"),
                    ("IP", signal.ip_address or "unknown"),
                ),
                flagged=not failed,
            ),
        ),
        event_ids=signal.event_ids,
        first_time=signal.time,
        last_time=signal.time,
    )


def query_failure_finding(
    workspace_id: str, since: datetime, failed_ticks: int, errors: Sequence[str], now: datetime
) -> Finding:
    """Raised by the tick (monitors/blindness.py) when queries failed `failed_ticks` ticks in a row."""
    episode = f"{QUERY_FAILURES} since {since.isoformat(timespec='seconds')}"
    principal = Principal(user_id=None, user_principal_name=f"workspace {workspace_id}", episode=episode)
    return Finding(
        detection=ID,
        severity=Severity.HIGH,
        principal=principal,
        headline=f"Monitor blind: Log Analytics queries failed {failed_ticks} ticks in a row",
        facts=(
            ("Workspace", workspace_id),
            ("Failing since", since.isoformat(timespec="seconds")),
            ("Ticks failed in a row", str(failed_ticks)),
            ("Latest errors", summarize_list([e[:300] for e in errors], shown=3)),
        ),
        events=(),
        event_ids=(f"workspace|{episode}",),
        first_time=since,
        last_time=now,
    )


def unread_window_finding(
    workspace_id: str, detection_id: str, severity: Severity, start: datetime, end: datetime, reason: str
) -> Finding:
    """Raised by the tick when a detection left a second unread (monitors/pipeline.py, Unread):
    as severe as the detection itself, since what it could not read may be what it looks for."""
    span = f"{start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}"
    episode = f"{detection_id} unread {span}"
    principal = Principal(user_id=None, user_principal_name=f"workspace {workspace_id}", episode=episode)
    return Finding(
        detection=ID,
        severity=Severity.CRITICAL if severity is Severity.CRITICAL else Severity.HIGH,
        principal=principal,
        headline=f"Monitor blind for one second: {detection_id} could not read the rows ingested then",
        facts=(
            ("Workspace", workspace_id),
            ("Detection", detection_id),
            ("Rows ingested", f"after {start.isoformat()}, up to {end.isoformat()}"),
            ("Why", reason[:300]),
        ),
        events=(),
        event_ids=(f"workspace|{episode}",),
        first_time=start,
        last_time=end,
    )


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


# --- cases: raw rows per table, run through the KQL above by tests/unit/test_detections.py


def _signin(row_id: str) -> dict:
    return {
        "TimeGenerated": "2026-11-20T09:58:00Z",
        "Id": row_id,
        "UserId": "11111111-2222-4333-8444-555555555555",
        "UserPrincipalName": "alice@contoso.com",
        "ResultType": "0",
    }


def _activity(event_id: str, operation: str, status: str = "Success", correlation: str = "op-1") -> dict:
    return {
        "TimeGenerated": "2026-11-20T10:00:00Z",
        "EventDataId": event_id,
        "CorrelationId": correlation,
        "CategoryValue": "Administrative",
        "OperationNameValue": operation,
        "ActivityStatusValue": status,
        "Caller": "mallory@contoso.com",
        "CallerIpAddress": "198.51.100.9",
        "_ResourceId": "/subscriptions/8f153238-e602-427e-a7c0-3043fbe50918/providers/"
        "microsoft.insights/diagnosticSettings/to-law",
    }


_FLOWING = {"SigninLogs": [_signin("s1")], "AADNonInteractiveUserSignInLogs": [_signin("n1")]}
DELETE = "Microsoft.Insights/diagnosticSettings/delete"

CASES = (
    Case(
        name="a table that never received a row is not called silent",
        rows=_FLOWING,
        findings=(),
    ),
    Case(
        name="a diagnostic setting deleted (Start and Success rows, one duplicated) is one finding",
        rows={
            **_FLOWING,
            "AzureActivity": [
                _activity("d1", DELETE.upper(), status="Start"),
                _activity("d2", DELETE),
                _activity("d2", DELETE),
            ],
        },
        findings=(Expect(principal="mallory@contoso.com", event_ids=("d1", "d2")),),
    ),
    Case(
        name="every watched table receives rows",
        rows={**_FLOWING, "AzureActivity": [_activity("w1", "Microsoft.Web/sites/write")]},
        findings=(),
    ),
    Case(
        name="a deletion already alerted is not alerted again",
        rows={**_FLOWING, "AzureActivity": [_activity("d3", DELETE, correlation="op-2")]},
        findings=(),
        context=Context(known_principals=frozenset({"mallory@contoso.com|diagnostic setting deleted op-2"})),
    ),
    Case(
        name="Entra ID's own diagnostic setting written (a category may be gone) is one finding",
        rows={
            **_FLOWING,
            "AzureActivity": [
                _activity("w2", "microsoft.aadiam/diagnosticSettings/write", correlation="op-3"),
                _activity("w3", "MICROSOFT.AADIAM/DIAGNOSTICSETTINGS/WRITE", "Start", correlation="op-3"),
            ],
        },
        findings=(Expect(principal="mallory@contoso.com", event_ids=("w2", "w3")),),
    ),
    Case(
        name="reading a diagnostic setting is not changing it",
        rows={**_FLOWING, "AzureActivity": [_activity("r1", "Microsoft.Insights/diagnosticSettings/read")]},
        findings=(),
    ),
)

DETECTION = Detection(
    id=ID,
    title="Log source silent: the monitor is blind",
    severity=Severity.HIGH,
    mitre=("T1562.008",),
    description=__doc__ or "",
    runbook=RUNBOOK,
    false_positives=FALSE_POSITIVES,
    query_file=Path(__file__).with_suffix(".kql"),
    dedupe="principal",
    parse=parse,
    evaluate=evaluate,
    cases=CASES,
)
