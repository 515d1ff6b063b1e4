"""The monitor's own health, as on-call reads it: is it ticking, is it reading, is it delivering.

Each tick merges one small entity (when it ran, how it ended, when one last succeeded) into the
`health` table beside the query-failure count of monitors/blindness.py. `read` puts those
together with the watermarks, the tick lease, the outbox backlog and the undeliverable alerts;
`problems` says in words what needs a look. `python -m monitors status` prints it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitors import blindness, history_store, lease, watermark
from monitors.adapters.table_store import StateStore
from monitors.detections.base import Detection
from monitors.state import OUTBOX, OUTBOX_PARTITION

TICK_ROW = "tick"
# A watermark further behind than this is a detection not keeping up (a tick's normal lag is the
# visibility lag plus one schedule period: a few minutes).
STALE_WATERMARK = timedelta(minutes=30)
# No successful tick for this long is what the watchdog outside the app alerts on (3 periods of
# the longest schedule allowed); the status says so sooner.
NO_SUCCESS = timedelta(minutes=15)


def record_tick(
    store: StateStore, workspace_id: str, now: datetime, query_errors: int, stood_back: str | None
) -> None:
    """How this tick ended; one merge, so the time of the last success survives failed ticks."""
    failed = f"{query_errors} failed {'query' if query_errors == 1 else 'queries'}"
    outcome = "stood back" if stood_back else failed if query_errors else "ok"
    fields: dict[str, object] = {
        "PartitionKey": workspace_id, "RowKey": TICK_ROW, "LastTickAt": now, "LastOutcome": outcome,
    }  # fmt: skip
    if outcome == "ok":
        fields["LastSuccessAt"] = now
    if stood_back:
        fields["LastStoodBack"] = stood_back[:300]
    store.merge(blindness.TABLE, fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectionLag:
    detection: str
    ingested_up_to: datetime | None  # None: the detection has never run
    lag: timedelta | None

    @property
    def text(self) -> str:
        return f"{_minutes(self.lag)} behind" if self.lag is not None else "never ran"


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    checked_at: datetime
    last_tick_at: datetime | None
    last_outcome: str | None
    last_success_at: datetime | None
    consecutive_failures: int  # ticks in a row with a failed query (source-silent's count)
    failing_since: datetime | None
    last_errors: tuple[str, ...]
    lease_holder: str | None
    lease_expires_at: datetime | None
    detections: tuple[DetectionLag, ...]
    outbox_waiting: int  # committed alerts not yet in every channel they go to
    undeliverable: int  # alerts no configured webhook takes any more

    def as_json(self) -> dict[str, object]:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "checked_at": stamp(self.checked_at),
            "last_tick_at": stamp(self.last_tick_at),
            "last_outcome": self.last_outcome,
            "last_success_at": stamp(self.last_success_at),
            "consecutive_failures": self.consecutive_failures,
            "failing_since": stamp(self.failing_since),
            "last_errors": list(self.last_errors),
            "lease_holder": self.lease_holder,
            "lease_expires_at": stamp(self.lease_expires_at),
            "detections": [
                {
                    "detection": d.detection,
                    "ingested_up_to": stamp(d.ingested_up_to),
                    "lag_s": d.lag.total_seconds() if d.lag is not None else None,
                }
                for d in self.detections
            ],
            "outbox_waiting": self.outbox_waiting,
            "undeliverable": self.undeliverable,
            "problems": problems(self),
        }


def read(store: StateStore, workspace_id: str, detections: Sequence[Detection], now: datetime) -> Health:
    tick = store.get(blindness.TABLE, workspace_id, TICK_ROW) or {}
    queries = store.get(blindness.TABLE, workspace_id, blindness.ROW) or {}
    held = store.get(watermark.TABLE, workspace_id, lease.ROW_KEY) or {}
    failures = int(queries.get("ConsecutiveFailures") or 0)
    lags = []
    for detection in detections:
        mark = watermark.read(store, workspace_id, detection.id).ingested_up_to
        lags.append(
            DetectionLag(detection=detection.id, ingested_up_to=mark, lag=now - mark if mark else None)
        )
    waiting = store.query(OUTBOX, "PartitionKey eq @pk and Committed eq true", {"pk": OUTBOX_PARTITION},
                          select=["RowKey"])  # fmt: skip
    undeliverable = store.query(
        history_store.TABLE, "PartitionKey eq @pk and Delivery eq @delivery",
        {"pk": history_store.MAIN, "delivery": "undeliverable"}, select=["RowKey"],
    )  # fmt: skip
    expires = held.get("ExpiresAt")
    return Health(
        checked_at=now,
        last_tick_at=tick.get("LastTickAt"),
        last_outcome=tick.get("LastOutcome"),
        last_success_at=tick.get("LastSuccessAt"),
        consecutive_failures=failures,
        failing_since=queries.get("FailingSince") if failures else None,
        last_errors=tuple(json.loads(queries.get("LastErrors") or "[]")) if failures else (),
        lease_holder=held.get("Holder") if expires and expires > now else None,
        lease_expires_at=expires if expires and expires > now else None,
        detections=tuple(lags),
        outbox_waiting=sum(1 for _ in waiting),
        undeliverable=sum(1 for _ in undeliverable),
    )


def problems(health: Health) -> list[str]:
    """What needs a look, in words; empty when the monitor is healthy."""
    found = []
    if health.last_success_at is None:
        found.append("no tick has succeeded yet")
    elif health.checked_at - health.last_success_at > NO_SUCCESS:
        found.append(f"no successful tick since {health.last_success_at.isoformat(timespec='seconds')}")
    if health.consecutive_failures:
        found.append(
            f"queries failed {health.consecutive_failures} ticks in a row: {'; '.join(health.last_errors)}"
        )
    behind = [d for d in health.detections if d.lag is not None and d.lag > STALE_WATERMARK]
    if behind:
        oldest = max(d.lag for d in behind if d.lag is not None)
        names = ", ".join(d.detection for d in behind)
        found.append(f"{len(behind)} detections read more than {_minutes(STALE_WATERMARK)} behind "
                     f"(up to {_minutes(oldest)}): {names}")  # fmt: skip
    if health.undeliverable:
        found.append(f"{health.undeliverable} alerts are undeliverable (see their delivery in the history)")
    return found


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
