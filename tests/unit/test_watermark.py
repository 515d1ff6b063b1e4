from datetime import UTC, datetime, timedelta

import pytest

from monitors.adapters.log_analytics import QueryFailed
from monitors.watermark import (
    FIRST_RUN_LOOKBACK,
    FUTURE_SKEW,
    NOTHING_INGESTED,
    VISIBILITY_LAG,
    latest_ingestion,
    next_window,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATE = timedelta(hours=48)


def test_first_run_looks_back_a_day() -> None:
    window = next_window(None, NOW, LATE)
    assert window.end == NOW - VISIBILITY_LAG
    assert window.start == window.end - FIRST_RUN_LOOKBACK
    assert window.earliest_time == window.start - LATE


def test_windows_are_contiguous_so_no_row_is_skipped() -> None:
    first = next_window(None, NOW, LATE)
    second = next_window(first.end, NOW + timedelta(minutes=5), LATE)
    assert second.start == first.end
    assert second.end == first.end + timedelta(minutes=5)


def test_a_clock_that_went_backwards_gives_an_empty_window() -> None:
    previous_end = NOW
    window = next_window(previous_end, NOW - timedelta(minutes=10), LATE)
    assert window.start == window.end


def test_a_host_clock_ahead_of_the_service_ends_the_window_at_its_newest_row() -> None:
    service_newest = NOW - timedelta(minutes=9)  # the host runs 10 minutes ahead
    window = next_window(NOW - timedelta(minutes=15), NOW, LATE, latest_ingested=service_newest)
    assert window.end == service_newest
    assert window.start == NOW - timedelta(minutes=15)


def test_the_service_clock_never_moves_a_watermark_back() -> None:
    previous_end = NOW - timedelta(minutes=7)
    for latest in (NOW - timedelta(hours=3), NOTHING_INGESTED):
        window = next_window(previous_end, NOW, LATE, latest_ingested=latest)
        assert window.start == window.end == previous_end  # held, not rewound


def test_a_service_ahead_of_the_host_changes_nothing() -> None:
    window = next_window(NOW - timedelta(minutes=7), NOW, LATE, latest_ingested=NOW + timedelta(minutes=3))
    assert window.end == NOW - VISIBILITY_LAG


class Reader:
    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.calls: list[tuple[datetime, datetime]] = []

    def query(self, kql: str, start: datetime, end: datetime) -> list[dict]:
        self.calls.append((start, end))
        if isinstance(self.answer, Exception):
            raise self.answer
        return [{"LatestIngestion": self.answer}]


def test_latest_ingestion_reads_the_service_and_raises_when_it_cannot() -> None:
    seen = NOW - timedelta(minutes=1)
    reader = Reader(seen.isoformat().replace("+00:00", "Z"))
    assert latest_ingestion(reader, NOW, LATE) == seen
    assert reader.calls == [(NOW - LATE, NOW + FUTURE_SKEW)]  # rows up to LATE old may still arrive
    assert latest_ingestion(Reader(None), NOW, LATE) == NOTHING_INGESTED  # empty tables: max() is null
    for broken in (QueryFailed("503"), "yesterday", 17):  # the tick counts it and holds the windows
        with pytest.raises(QueryFailed):
            latest_ingestion(Reader(broken), NOW, LATE)
