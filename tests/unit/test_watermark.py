from datetime import UTC, datetime, timedelta

from monitors.watermark import FIRST_RUN_LOOKBACK, VISIBILITY_LAG, next_window

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
