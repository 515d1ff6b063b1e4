"""Which rows a tick reads: an ingestion-time window that never skips a row.

Rows are selected by `ingestion_time()`, not TimeGenerated: the Activity Log can land 20
minutes (sometimes hours) after its TimeGenerated, so a TimeGenerated window would miss it.
The window ends a little before now, because rows become queryable shortly after the
ingestion time they are stamped with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from monitors.adapters.table_store import StaleWrite, StateStore

VISIBILITY_LAG = timedelta(minutes=2)
FIRST_RUN_LOOKBACK = timedelta(hours=24)
TABLE = "watermarks"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    start: datetime  # exclusive: rows ingested after this ...
    end: datetime  # ... up to and including this
    earliest_time: datetime  # TimeGenerated lower bound, wide enough for late rows


def next_window(previous_end: datetime | None, now: datetime, late_arrival: timedelta) -> Window:
    end = now - VISIBILITY_LAG
    start = previous_end if previous_end is not None else end - FIRST_RUN_LOOKBACK
    start = min(start, end)  # a clock that went backwards yields an empty window, not a negative one
    return Window(start=start, end=end, earliest_time=start - late_arrival)


@dataclass(frozen=True, slots=True, kw_only=True)
class Watermark:
    ingested_up_to: datetime | None
    etag: str | None


def read(store: StateStore, workspace_id: str, query_name: str) -> Watermark:
    entity = store.get(TABLE, workspace_id, query_name)
    if entity is None:
        return Watermark(ingested_up_to=None, etag=None)
    return Watermark(ingested_up_to=entity["IngestedUpTo"], etag=entity["etag"])


def advance(store: StateStore, workspace_id: str, query_name: str, previous: Watermark, to: datetime) -> None:
    """Move forward only from the value we read (ETag): a racing tick makes this raise StaleWrite.

    A write whose answer was lost is retried by the SDK and then meets its own result (409 on
    the insert, 412 on the replace): when the stored value is already ours, that is success.
    """
    entity = {"PartitionKey": workspace_id, "RowKey": query_name, "IngestedUpTo": to}
    try:
        if previous.etag is None:
            if not store.insert(TABLE, entity):
                raise StaleWrite(f"watermark {query_name} was created by another tick")
            return
        store.replace(TABLE, entity, etag=previous.etag)
    except StaleWrite:
        if read(store, workspace_id, query_name).ingested_up_to != to:
            raise
