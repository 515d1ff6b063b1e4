"""`python -m monitors doctor`: after `azd up`, is everything the monitor needs in place?

Run with the deployed app settings in the environment (infra/hooks/postdeploy.sh does that):
the settings are valid and the schedule sane; the identity can query the workspace; each table
the detections read has rows, and how fresh the newest is; every state table takes a write;
every break-glass account appears in the sign-in logs; and, only with --send-test-card, each
webhook accepts a test card. One line per check, with the fix when it fails.

The checks decide over plain values (`table_check`, `break_glass_check`, ...); `run` gathers
those values from the workspace, the tables and Teams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors import blindness, history_store, kql, watermark
from monitors.adapters.log_analytics import LogsReader, QueryFailed, Row
from monitors.adapters.table_store import StateStore
from monitors.adapters.teams import PostResult, TeamsPoster
from monitors.settings import (
    NONE,
    WATCHED_TABLES,
    BreakGlassAccounts,
    Settings,
    SettingsError,
    Webhook,
    load_settings,
    tick_gap_minutes,
    unresolved_reference,
)
from monitors.state import OUTBOX

# How far back the table counts look: a day shows whether a table is being exported at all.
TABLE_LOOKBACK = timedelta(days=1)
# Every table the monitor writes; each takes one test entity, deleted again.
STATE_TABLES = (watermark.TABLE, blindness.TABLE, OUTBOX, history_store.TABLE)
DOCTOR_ROW = "doctor"
MAX_DETAIL_CHARS = 600
NO_ROWS_FIX = (
    "send it to the workspace: sign-in and audit tables from the Entra diagnostic setting "
    "(docs/deploy.md, step 4), AzureActivity from the subscription's Activity Log export; new "
    "settings take minutes to hours before the first rows (a table nothing was ever sent to does "
    "not exist yet)"
)
WORKSPACE_FIX = (
    "give the app identity Log Analytics Reader on the workspace (docs/deploy.md, prerequisites: "
    'az role assignment create ... --role "Log Analytics Reader"); a new assignment takes 5-10 minutes'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    passed: bool | None  # None: not checked (said why), neither a pass nor a failure
    detail: str
    fix: str = ""

    @property
    def line(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        fix = f" -> fix: {self.fix}" if self.passed is False and self.fix else ""
        detail = " ".join(self.detail.split())  # an SDK error spans lines; a check is one
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
        return f"{mark}  {self.name}: {detail}{fix}"


# ------------------------------------------------------------------------------ the decisions


def settings_checks(
    settings: Settings, first_webhook_in_key_vault: bool = False, watchdog_minutes: str | None = None
) -> list[Check]:
    """`first_webhook_in_key_vault`: TEAMS_WEBHOOK_URL was left out as a Key Vault reference, so
    its "none" is doctor's, not a setting to warn about. `watchdog_minutes`: the azd variable
    MONITOR_SCHEDULE_MINUTES the watchdog rule was deployed with, when doctor runs with the azd
    environment (not an app setting: the app never reads it)."""
    gap = tick_gap_minutes(settings.schedule)
    checks = [
        Check(name="settings", passed=True, detail="every app setting is valid"),
        Check(
            name="schedule",
            passed=True,
            detail=f"MONITOR_SCHEDULE {settings.schedule!r}: at most {gap} min between ticks",
        ),
    ]
    if watchdog_minutes is not None and watchdog_minutes.strip() != str(gap):
        checks.append(
            Check(
                name="watchdog",
                passed=False,
                detail=f"MONITOR_SCHEDULE_MINUTES is {watchdog_minutes.strip()!r}, the schedule's gap {gap}",
                fix=f"azd env set MONITOR_SCHEDULE_MINUTES {gap} && azd provision (the watchdog alerts after "
                "three of these periods without a successful tick)",
            )
        )
    warnings = [w for w in settings.warnings if not (first_webhook_in_key_vault and "TEAMS_WEBHOOK_URL" in w)]
    checks += [Check(name="settings", passed=True, detail=f"note: {w}") for w in warnings]
    return checks


def settings_failures(error: SettingsError) -> list[Check]:
    # Each problem already names its fix.
    return [Check(name="settings", passed=False, detail=problem) for problem in error.problems]


def table_check(table: str, rows: int, newest: datetime | None, silence_hours: int, now: datetime) -> Check:
    name = f"table {table}"
    if not rows or newest is None:
        if not silence_hours:
            return Check(name=name, passed=True, detail="no rows today; not watched (SOURCE_SILENCE_HOURS 0)")
        return Check(
            name=name,
            passed=False,
            detail=f"no rows ingested in the last {TABLE_LOOKBACK.days * 24} h",
            fix=NO_ROWS_FIX,
        )
    age = now - newest
    counted = f"{rows} row{'s' if rows != 1 else ''} in the last {TABLE_LOOKBACK.days * 24} h"
    detail = f"{counted}, newest ingested {_ago(age)} ago"
    if silence_hours and age > timedelta(hours=silence_hours):
        return Check(
            name=name,
            passed=False,
            detail=f"{detail}, longer than its {silence_hours} h",
            fix=f"check the export to the workspace, or raise {table} in SOURCE_SILENCE_HOURS if it is quiet",
        )
    return Check(name=name, passed=True, detail=detail)


def break_glass_check(accounts: BreakGlassAccounts, seen: Sequence[Row], days: int) -> list[Check]:
    """One line per configured account: does it appear in the sign-in logs of the last `days`?"""
    ids = {str(row.get("UserId", "")).lower() for row in seen}
    upns = {str(row.get("UserPrincipalName", "")).lower() for row in seen}
    wanted = [(a, a in ids) for a in sorted(accounts.object_ids)] + [
        (u, u in upns) for u in sorted(accounts.upns)
    ]
    return [
        Check(name=f"break-glass {account}", passed=True, detail=f"signed in within the last {days} days")
        if found
        else Check(
            name=f"break-glass {account}",
            passed=False,
            detail=f"no sign-in in the last {days} days",
            fix=(
                "check the id (az ad user show --id <upn> --query id -o tsv) and sign in with the account as "
                "your break-glass drill (docs/deploy.md, step 5)"
            ),
        )
        for account, found in wanted
    ]


def webhook_check(webhook: Webhook, result: PostResult) -> Check:
    name = f"webhook {webhook.name} ({webhook.host})"
    if result.delivered:
        return Check(name=name, passed=True, detail=f"accepted the test card (HTTP {result.status})")
    fix = (
        "the workflow refused the URL's signature, or lets only your tenant's users trigger it: copy the "
        "URL again, and set Who can trigger the flow to Anyone (docs/deploy.md, step 2)"
        if result.status in (401, 403)
        else "check the workflow exists and its URL is the one in Key Vault (docs/deploy.md, step 2)"
    )
    return Check(name=name, passed=False, detail=f"refused the test card: {result.error}", fix=fix)


def without_key_vault_webhooks(env: Mapping[str, str]) -> tuple[dict[str, str], list[Check]]:
    """Webhook settings still holding their Key Vault reference (read from outside the app,
    where the platform has not resolved them) cannot be posted to here: leave them out and say so."""
    found = {
        k: v for k, v in env.items() if k.startswith("TEAMS_WEBHOOK_URL") and unresolved_reference(v.strip())
    }
    if not found:
        return dict(env), []
    if "TEAMS_WEBHOOK_URL" in found:  # without the first webhook the others cannot be set either
        kept = {k: v for k, v in env.items() if not k.startswith("TEAMS_WEBHOOK_")}
        kept["TEAMS_WEBHOOK_URL"] = NONE
    else:
        dropped = {*found, *(n.replace("_URL", "_MIN_SEVERITY", 1) for n in found)}
        kept = {k: v for k, v in env.items() if k not in dropped}
    checks = [
        Check(
            name=f"webhook {name}",
            passed=None,
            detail="a Key Vault reference: only the app resolves it; check it in the portal (docs/deploy.md, "
            "Verify step 2) or run doctor with the resolved URL to send a test card",
        )
        for name in sorted(found)
    ]
    return kept, checks


# ------------------------------------------------------------------------------ gathering


@dataclass(frozen=True, slots=True, kw_only=True)
class Probes:
    """What doctor talks to; built from the settings like the app's own services."""

    logs: LogsReader
    store: StateStore
    teams: TeamsPoster


def run(
    env: Mapping[str, str],
    connect: Callable[[Settings], Probes],
    now: datetime,
    send_test_card: bool = False,
    write_state: bool = True,
) -> list[Check]:
    first_in_key_vault = unresolved_reference(env.get("TEAMS_WEBHOOK_URL", "").strip())
    env, checks = without_key_vault_webhooks(env)
    try:
        settings = load_settings(env)
    except SettingsError as error:
        return [*checks, *settings_failures(error)]
    checks += settings_checks(settings, first_in_key_vault, env.get("MONITOR_SCHEDULE_MINUTES"))
    probes = connect(settings)
    checks += _workspace_checks(settings, probes.logs, now)
    if write_state:
        checks += [_state_table_check(probes.store, settings.workspace_id, t, now) for t in STATE_TABLES]
    else:
        checks.append(
            Check(
                name="state tables",
                passed=None,
                detail="not written to (--no-state-write): only the app writes",
            )
        )
    checks += _webhook_checks(settings, probes.teams, now, send_test_card)
    return checks


def _workspace_checks(settings: Settings, logs: LogsReader, now: datetime) -> list[Check]:
    silence = dict(settings.source_silence_hours)
    answers: dict[str, Row | QueryFailed] = {}
    for table in WATCHED_TABLES:
        try:
            rows = logs.query(_TABLE_QUERY.format(table=table), now - TABLE_LOOKBACK, now)
            answers[table] = rows[0] if rows else {}
        except QueryFailed as error:
            answers[table] = error
    refused = [a for a in answers.values() if isinstance(a, QueryFailed)]
    if len(refused) == len(answers):  # nothing answers: access, not a table
        return [Check(name="workspace query", passed=False, detail=str(refused[0]), fix=WORKSPACE_FIX)]
    checks = [Check(name="workspace query", passed=True, detail=f"workspace {settings.workspace_id} answers")]
    for table, answer in answers.items():
        if isinstance(answer, QueryFailed):  # the workspace answers, but not for this table
            checks.append(
                Check(name=f"table {table}", passed=False, detail=f"query failed: {answer}", fix=NO_ROWS_FIX)
            )
            continue
        newest = _as_datetime(answer.get("Newest"))
        checks.append(table_check(table, int(answer.get("Rows") or 0), newest, silence.get(table, 0), now))
    accounts = settings.break_glass
    if not accounts:
        return checks
    days = settings.break_glass_drill_days
    try:
        seen = logs.query(_break_glass_query(accounts), now - timedelta(days=days), now)
    except QueryFailed as error:
        return [
            *checks,
            Check(name="break-glass sign-ins", passed=False, detail=str(error), fix=WORKSPACE_FIX),
        ]
    return checks + break_glass_check(accounts, seen, days)


def _state_table_check(store: StateStore, workspace_id: str, table: str, now: datetime) -> Check:
    name = f"state table {table}"
    try:
        store.merge(table, {"PartitionKey": DOCTOR_ROW, "RowKey": workspace_id, "CheckedAt": now})
        store.delete(table, DOCTOR_ROW, workspace_id)
    except Exception as error:
        return Check(
            name=name,
            passed=False,
            detail=f"write refused: {type(error).__name__}: {error}",
            fix="give the app identity Storage Table Data Contributor on its storage account (rbac.bicep)",
        )
    return Check(name=name, passed=True, detail="writable")


def _webhook_checks(settings: Settings, teams: TeamsPoster, now: datetime, send: bool) -> list[Check]:
    from monitors.cards import test_message

    if not send:
        return [
            Check(
                name=f"webhook {w.name} ({w.host})", passed=None, detail="not posted to; add --send-test-card"
            )
            for w in settings.webhooks
        ]
    return [webhook_check(w, teams.post(w, test_message(now))) for w in settings.webhooks]


# Count and newest ingestion time of one table; a table nothing was ever sent to does not exist
# in the workspace, and its query fails.
_TABLE_QUERY = "{table}\n| summarize Rows = count(), Newest = max(ingestion_time())"


def _break_glass_query(accounts: BreakGlassAccounts) -> str:
    return "\n".join(
        [
            "union SigninLogs, AADNonInteractiveUserSignInLogs",
            f"| where UserId in ({kql.string_list(sorted(accounts.object_ids))})",
            f"    or tolower(UserPrincipalName) in ({kql.string_list(sorted(accounts.upns))})",
            "| summarize LastSignIn = max(TimeGenerated)",
            "    by UserId, UserPrincipalName = tolower(UserPrincipalName)",
        ]
    )


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _ago(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def report(checks: Iterable[Check]) -> tuple[str, bool]:
    """The printed lines and whether every check that ran passed."""
    checks = list(checks)
    failed = [c for c in checks if c.passed is False]
    summary = (
        f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed"
    )
    return "\n".join([*(c.line for c in checks), summary]), not failed
