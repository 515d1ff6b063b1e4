"""Which rows a tick reads: an ingestion-time window that never skips a row.

Rows are selected by `ingestion_time()`, not TimeGenerated: the Activity Log can land 20
minutes (sometimes hours) after its TimeGenerated, so a TimeGenerated window would miss it.
The window ends a little before now, because rows become queryable shortly after the
ingestion time they are stamped with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitors import kql
from monitors.adapters.log_analytics import LogsReader, QueryFailed
from monitors.adapters.table_store import StaleWrite, StateStore

VISIBILITY_LAG = timedelta(minutes=2)
# The service applies a query's timespan to TimeGenerated. A source whose clock runs ahead stamps
# rows after their ingestion time, even after our now: a timespan ending at now would drop them
# while the watermark moves past them. A day of slack covers a source clock hours off; rows dated
# further ahead are still dropped by the timespan (tests/reliability/test_time.py).
FUTURE_SKEW = timedelta(days=1)
FIRST_RUN_LOOKBACK = timedelta(hours=24)
TABLE = "watermarks"


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    start: datetime  # exclusive: rows ingested after this ...
    end: datetime  # ... up to and including this
    earliest_time: datetime  # TimeGenerated lower bound, wide enough for late rows


def next_window(
    previous_end: datetime | None,
    now: datetime,
    late_arrival: timedelta,
    latest_ingested: datetime | None = None,
) -> Window:
    """`latest_ingested`: the newest ingestion time the service has shown (latest_ingestion);
    None where no service is asked (replay, tests of the host clock alone)."""
    end = now - VISIBILITY_LAG
    start = previous_end if previous_end is not None else end - FIRST_RUN_LOOKBACK
    if latest_ingested is not None and latest_ingested < end:
        # A host clock ahead of the service must not end the window where the service has not
        # ingested yet: those rows would land behind the watermark. Never move it back, either.
        end = max(latest_ingested, min(start, end))
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


LATEST_INGESTION_QUERY = Path(__file__).with_name("latest_ingestion.kql")
NOTHING_INGESTED = datetime(1970, 1, 1, tzinfo=UTC)


def latest_ingestion(logs: LogsReader, now: datetime, late_arrival: timedelta) -> datetime:
    """The service's clock as its rows show it: the newest ingestion time among rows the tick may
    read; NOTHING_INGESTED when there are none. Raises QueryFailed when the query fails or its
    answer is unreadable: the caller holds the windows still (NOTHING_INGESTED) and counts the
    failure, since every window stays empty for as long as it lasts."""
    rows = logs.query(kql.load(LATEST_INGESTION_QUERY), start=now - late_arrival, end=now + FUTURE_SKEW)
    value = rows[0].get("LatestIngestion") if rows else None
    if value is None:
        return NOTHING_INGESTED
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise QueryFailed(f"the newest ingestion time is unreadable: {value[:40]!r}") from None
    if not isinstance(value, datetime):
        raise QueryFailed(f"the newest ingestion time is a {type(value).__name__}, not a datetime")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
