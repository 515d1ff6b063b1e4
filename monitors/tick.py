"""One monitoring tick: the imperative shell around the pure core.

watermark -> query -> (detections arrive with the detection issue) -> advance watermark.
Until detections exist the tick only reports what reached the workspace: it never claims to
have checked anything it did not check.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from monitors import kql, watermark
from monitors.adapters.log_analytics import LogsReader
from monitors.adapters.table_store import StateStore

log = logging.getLogger("monitors.tick")

QUERIES = Path(__file__).parent / "queries"
SOURCE_ACTIVITY = "source_activity"


@dataclass(frozen=True, slots=True, kw_only=True)
class TickReport:
    window: watermark.Window
    rows_by_source: dict[str, int]
    duration_s: float

    def summary(self) -> str:
        """One structured line per tick, for App Insights queries and for people."""
        return json.dumps(
            {
                "event": "tick",
                "window_start": self.window.start.isoformat(),
                "window_end": self.window.end.isoformat(),
                "rows": self.rows_by_source,
                "rows_total": sum(self.rows_by_source.values()),
                "duration_s": round(self.duration_s, 3),
            },
            sort_keys=True,
        )


def run_tick(
    *, logs: LogsReader, store: StateStore, workspace_id: str, late_arrival: timedelta, now: datetime
) -> TickReport:
    started = time.perf_counter()
    mark = watermark.read(store, workspace_id, SOURCE_ACTIVITY)
    window = watermark.next_window(mark.ingested_up_to, now, late_arrival)
    query = kql.render(
        kql.load(QUERIES / f"{SOURCE_ACTIVITY}.kql"),
        {"EarliestTime": window.earliest_time, "WatermarkStart": window.start, "WatermarkEnd": window.end},
    )
    rows = logs.query(query, start=window.earliest_time, end=now)
    rows_by_source = {str(r["SourceTable"]): int(r["Rows"]) for r in rows}
    watermark.advance(store, workspace_id, SOURCE_ACTIVITY, mark, window.end)
    report = TickReport(
        window=window, rows_by_source=rows_by_source, duration_s=time.perf_counter() - started
    )
    log.info(report.summary())
    return report
