"""Run one detection over one window: render its KQL, query, parse every row, evaluate.

Shared by the timer tick, `replay` and the detection case tests, so all three exercise the
same query text and the same parsing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from monitors import kql
from monitors.adapters.log_analytics import LogsReader, QueryFailed, QueryIncomplete
from monitors.detections import entra
from monitors.detections.base import (
    Context,
    Detection,
    RowError,
    drill_since,
    known_keys,
    one_key_per_user,
    same_user_key,
)
from monitors.model import Finding
from monitors.watermark import FUTURE_SKEW, Window

log = logging.getLogger("monitors.pipeline")
MAX_REASONS = 5
# Log Analytics cuts a result at 500,000 rows (or ~64-100 MB). Well before that, or when the
# service says the result is partial, the window is halved and each half queried on its own.
# A second that still does not fit (a password spray, huge user agents) is left unread and
# returned as such: the tick alerts on it and moves on, so one dense second can never hold a
# watermark, and every event after it, back. A partial answer with no rows at all is the
# service failing, whatever the window: that stays a failed query (the watermark holds).
SPLIT_AT_ROWS = 250_000
MIN_WINDOW = timedelta(seconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectionRun:
    detection: str
    rows: int
    skipped: int
    skip_reasons: tuple[str, ...]
    findings: tuple[Finding, ...]
    unread: tuple[Unread, ...] = ()  # seconds too dense for one result: alerted, not read


@dataclass(frozen=True, slots=True, kw_only=True)
class Unread:
    """An ingestion-time window of at most MIN_WINDOW whose rows do not fit in one result."""

    start: datetime  # exclusive
    end: datetime
    reason: str


def query_values(window: Window, context: Context) -> dict[str, object]:
    """Every value a detection query may declare, typed; kql.render turns them into literals."""
    return {
        "EarliestTime": window.earliest_time,
        "WatermarkStart": window.start,
        "WatermarkEnd": window.end,
        "BreakGlassObjectIds": sorted(context.break_glass.object_ids),
        "BreakGlassUpns": sorted(context.break_glass.upns),
        "BreakGlassGroupIds": sorted(context.break_glass_groups),
        # --- break-glass-weak-method and source-silent
        "DrillDays": context.drill_days,
        "DrillSince": drill_since(window, context),
        **{f"Silence{table}Hours": hours for table, hours in context.silence_hours},
        # --- what Entra's results and tokens mean (MFA amr values, first-factor codes, step-up)
        **entra.query_values(),
        "StepUpSettleMinutes": int(context.step_up_settle.total_seconds() // 60),
    }


def query_start(detection: Detection, values: Mapping[str, object], window: Window) -> datetime:
    """The timespan's start: the window's, or earlier when a declared time reaches further back.

    The service applies the timespan to TimeGenerated before the query runs, so a lookback
    (the break-glass drill) must widen it or it would silently see nothing.
    """
    declared = kql.parameters(detection.query)
    times = [v for name, v in values.items() if name in declared and isinstance(v, datetime)]
    return min([window.earliest_time, *times])


def render_query(detection: Detection, values: Mapping[str, object]) -> str:
    template = detection.query
    declared = kql.parameters(template)
    return kql.render(template, {name: values[name] for name in declared})


class Memory(Protocol):
    """What earlier ticks alerted on; None in the detection case tests (the case gives the context)."""

    def known_principals(self, detection: str, principal_keys: Iterable[str]) -> frozenset[str]: ...
    def seen_events(self, detection: str, earliest: datetime, latest: datetime) -> frozenset[str]: ...


def run_detection(
    detection: Detection,
    logs: LogsReader,
    window: Window,
    context: Context,
    now: datetime,
    memory: Memory | None = None,
    split_at_rows: int = SPLIT_AT_ROWS,
) -> DetectionRun:
    unread: list[Unread] = []
    rows = _fetch(detection, logs, window, context, now, split_at_rows, unread)
    observations, reasons = [], []
    for index, row in enumerate(rows):
        try:
            observations.append(detection.parse(row))
        except RowError as error:
            if len(reasons) < MAX_REASONS:
                reasons.append(f"row {index}: {error}")
    observations = one_key_per_user(observations)
    if memory is not None and detection.dedupe == "principal":
        # A user once alerted by object id and later seen by UPN alone (or the other way round)
        # is the same user: asking for both keys keeps it to one alert across ticks. An account
        # with an object id never asks for an alias, so a UPN reused by a new account alerts.
        # Left open: a former holder that alerted only from UPN-only rows makes the new one known.
        pairs = {(detection.baseline_key(o), same_user_key(detection.baseline_key, o)) for o in observations}
        held = memory.known_principals(detection.id, {k for pair in pairs for k in pair if k is not None})
        context = replace(context, known_principals=known_keys(pairs, held))
    elif memory is not None:
        seen = memory.seen_events(detection.id, window.earliest_time, max(now, window.end))
        context = replace(context, seen_event_ids=seen)
    skipped = len(rows) - len(observations)
    if skipped:
        log.warning("%s: skipped %d malformed rows, e.g. %s", detection.id, skipped, "; ".join(reasons))
    return DetectionRun(
        detection=detection.id,
        rows=len(rows),
        skipped=skipped,
        skip_reasons=tuple(reasons),
        findings=tuple(detection.evaluate(observations, context)),
        unread=tuple(unread),
    )


def _fetch(
    detection: Detection,
    logs: LogsReader,
    window: Window,
    context: Context,
    now: datetime,
    split_at_rows: int,
    unread: list[Unread],
) -> list[Any]:
    """The window's rows; a result that is partial or near the row limit is split by ingestion
    time, down to MIN_WINDOW; a window that small that still does not fit goes to `unread`."""
    values = query_values(window, context)
    query = render_query(detection, values)
    try:
        start = query_start(detection, values, window)
        rows = logs.query(query, start=start, end=max(now, window.end) + FUTURE_SKEW)
        if len(rows) < split_at_rows:
            return rows
        reason, received = f"{len(rows)} rows", len(rows)
    except QueryIncomplete as error:
        reason, received = str(error), error.received
    if window.end - window.start <= MIN_WINDOW:
        if not received:  # an empty partial answer is the service failing, not a dense second
            raise QueryFailed(
                f"{detection.id}: even a {MIN_WINDOW.total_seconds():g} s window fails: {reason}"
            )
        log.error("%s: %s..%s does not fit in one result, left unread: %s",
                  detection.id, window.start, window.end, reason)  # fmt: skip
        unread.append(Unread(start=window.start, end=window.end, reason=reason))
        return []
    middle = window.start + (window.end - window.start) / 2
    log.info("%s: splitting %s..%s at %s (%s)", detection.id, window.start, window.end, middle, reason)
    first = _fetch(detection, logs, replace(window, end=middle), context, now, split_at_rows, unread)
    return first + _fetch(detection, logs, replace(window, start=middle), context, now, split_at_rows, unread)
