"""The tick's memory of its own query failures: the third signal of source-silent.

A query cannot report that it failed, so the tick counts failing ticks in a row (any
detection's query failing makes the tick a failing one: part of the monitor is blind). When
the count reaches SOURCE_SILENT_FAILED_TICKS it stores one source-silent alert for the
episode, through the same outbox as every other alert; the first tick whose queries all
succeed ends the episode, resolves that alert in the history and re-arms. One small entity per
workspace in the `health` table; written only when something changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from monitors import alerts
from monitors.adapters.table_store import StateStore
from monitors.detections import source_silent
from monitors.history_store import StatusConflict
from monitors.model import Alert, Finding
from monitors.settings import Settings
from monitors.state import AlertState, new_entry

log = logging.getLogger("monitors.blindness")
TABLE = "health"
ROW = "queries"
MAX_ERRORS = 3


def watch_queries(
    store: StateStore,
    state: AlertState,
    settings: Settings,
    query_errors: Sequence[str],
    now: datetime,
    targets: Callable[[Alert], tuple[str, ...]],
) -> list[str]:
    """Count this tick's outcome; return the ids of alerts stored (zero or one)."""
    entity = store.get(TABLE, settings.workspace_id, ROW)
    failures = int(entity["ConsecutiveFailures"]) if entity else 0
    if not query_errors:
        if failures:
            _recovered(store, state, settings.workspace_id, entity or {}, now)
        return []
    since = entity["FailingSince"] if entity and failures else now
    failures += 1
    errors = list(query_errors)[-MAX_ERRORS:]
    record = {
        "PartitionKey": settings.workspace_id,
        "RowKey": ROW,
        "ConsecutiveFailures": failures,
        "FailingSince": since,
        "LastErrors": json.dumps(errors),
        "AlertId": (entity or {}).get("AlertId", "") if failures > 1 else "",
    }
    stored: list[str] = []
    if failures >= settings.source_silent_failed_ticks:
        finding = source_silent.query_failure_finding(settings.workspace_id, since, failures, errors, now)
        stored = store_episodes(state, [finding], targets, now)
        if stored:
            record["AlertId"] = stored[-1]
            log.error("%s: queries failed %d ticks in a row; alerted", source_silent.ID, failures)
    store.replace(TABLE, record, None)
    return stored


def store_episodes(
    state: AlertState, findings: Sequence[Finding], targets: Callable[[Alert], tuple[str, ...]], now: datetime
) -> list[str]:
    """Store the source-silent findings whose episode has no alert yet; return their alert ids."""
    known = state.known_principals(source_silent.ID, [f.principal.key for f in findings])
    new = [f for f in findings if f.principal.key not in known]
    if not new:
        return []
    entries = [new_entry(alert, targets(alert), now) for alert in alerts.make_alerts(new, now)]
    state.enqueue(entries)
    committed = state.commit(entries, "principal", (min(f.first_time for f in new), now))
    return [entry.alert.alert_id for entry in committed]


def _recovered(store: StateStore, state: AlertState, workspace_id: str, entity: dict, now: datetime) -> None:
    alert_id = entity.get("AlertId") or ""
    if alert_id:
        with contextlib.suppress(KeyError, StatusConflict):  # resolved by someone already, or gone
            state.history.set_status(
                alert_id, "resolved", by="monitor", note="queries succeed again", now=now,
                allowed_from=("new", "acknowledged"),
            )  # fmt: skip
    store.replace(
        TABLE,
        {"PartitionKey": workspace_id, "RowKey": ROW, "ConsecutiveFailures": 0, "FailingSince": now,
         "LastErrors": "[]", "AlertId": ""},
        None,
    )  # fmt: skip
