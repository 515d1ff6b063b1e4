"""Log Analytics failing: throttling, 5xx, timeouts, partial and cut results, a rejected query.

azure-core's retry policy is part of what is measured: it retries a POST query on 429 (honouring
Retry-After) and on 500/503/504, three times, with 0 s, 1.6 s, 3.2 s of backoff. When the query
still fails, the detection's watermark must stay where it was so the next tick reads the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from devstack.stack import Devstack
from monitors.adapters.log_analytics import QueryIncomplete
from monitors.detections import DETECTIONS
from tests.reliability.harness import FULL, TICK, Figures, World, full_only, start_time
from tests.reliability.wrappers import Probe, ProbedLogs

Record = Callable[[World | Figures], Figures]
SDK_ATTEMPTS = 4  # the first try and azure-core's three status retries
# Faults hit the detections' queries (their rendered parameters), not the tick's service-clock
# query (monitors/latest_ingestion.kql), whose failure only holds the windows still.
DETECTION_QUERY = "WatermarkStart"
USER_ARM_WRITE_QUERY = "ARM control-plane writes and deletes by user accounts"  # its first comment


def test_control_no_fault(devstack: Devstack, record: Record) -> None:
    world = World(devstack, "control: no fault", "Control")
    now = start_time()
    world.standard(now)
    report = world.tick(now)
    assert report is not None
    assert report.alerts_stored == 4
    assert devstack.log_analytics.fault_log == []  # the control: nothing injected
    record(world)
    world.assert_invariants()


@pytest.mark.parametrize(
    ("mode", "count", "options"),
    [
        ("429", 2, {"retry_after": 0.2}),  # Retry-After honoured, the third attempt answers
        ("500", 1, {}),
        ("503", 2, {}),
        ("timeout", 1, {"delay": 0.5}),  # the server timeout: 504 after the wait
        ("partial", 1, {}),  # half the rows and a PartialError: the window is split
    ],
)
def test_transient_fault_is_absorbed_within_the_tick(
    devstack: Devstack, record: Record, mode: str, count: int, options: dict
) -> None:
    world = World(devstack, f"query {mode} x{count}, recovered in the same tick", "Log Analytics")
    world.figures.fault_kinds = [mode]
    now = start_time()
    world.standard(now)
    devstack.log_analytics.set_fault(mode, count=count, match=DETECTION_QUERY, **options)
    report = world.tick(now)
    record(world)
    assert report is not None
    assert report.query_errors == []
    assert len(devstack.log_analytics.fault_log) == count
    world.assert_invariants()


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("429", {"retry_after": 0.2}),
        # 503 and a timeout wait out azure-core's backoff (0.8 s doubling) between four attempts
        pytest.param("503", {}, marks=FULL),
        pytest.param("timeout", {"delay": 0.2}, marks=FULL),
        ("invalid", {}),  # a 400 is not retried: one attempt
    ],
)
def test_query_failing_after_retries_keeps_the_watermark(
    devstack: Devstack, record: Record, mode: str, options: dict
) -> None:
    """user-arm-write's query fails for good in this tick; the next tick reads its rows."""
    world = World(devstack, f"query {mode} until the SDK gives up", "Log Analytics")
    world.figures.fault_kinds = [mode]
    now = start_time()
    world.standard(now)
    attempts = 1 if mode == "invalid" else SDK_ATTEMPTS
    devstack.log_analytics.set_fault(mode, count=attempts, match=USER_ARM_WRITE_QUERY, **options)
    first = world.tick(now)
    assert devstack.log_analytics.fault_log == [mode] * attempts  # every attempt met the fault
    assert first is not None
    assert len(first.query_errors) == 1  # user-arm-write failed, break-glass-use went on
    assert world.watermarks[-1]["user-arm-write"] is None  # never moved
    assert first.alerts_stored == 2  # the two break-glass alerts
    second = world.tick(now + TICK)
    assert second is not None
    assert second.query_errors == []
    assert second.alerts_stored == 2  # the two users, read again from the old watermark
    record(world)
    world.assert_invariants()


def test_dropped_connection_fails_only_that_detection(devstack: Devstack, record: Record) -> None:
    """A reset connection (no HTTP answer) is not retried for a POST; it must not end the tick."""
    world = World(devstack, "query connection dropped", "Log Analytics")
    world.figures.fault_kinds = ["drop"]
    now = start_time()
    world.standard(now)
    devstack.log_analytics.set_fault("drop", count=1, match=DETECTION_QUERY)
    first = world.tick(now)
    assert devstack.log_analytics.fault_log == ["drop"]
    world.tick(now + TICK)
    record(world)
    assert world.errors == [], "a dropped query connection ended the whole tick"
    assert first is not None
    assert len(first.query_errors) == 1
    world.assert_invariants()


def test_result_cut_at_the_row_limit_is_split(devstack: Devstack, record: Record) -> None:
    """The service cuts results at its record limit (here 3): every row is still read, once."""
    world = World(devstack, "results cut at the row limit (3 rows)", "Log Analytics")
    world.figures.fault_kinds = ["row limit"]
    now = start_time()
    for n in range(12):  # 12 sign-ins, each ingested a second apart
        world.break_glass(f"cut-{n}", now - timedelta(minutes=9), now - timedelta(minutes=8, seconds=n))
    probe = Probe()  # the cut answers, as the tick's reader saw them
    reader = ProbedLogs(world.services.logs, probe)
    devstack.log_analytics.max_rows = 3
    try:
        report = world.tick(now, world.with_services(logs=reader))
    finally:
        devstack.log_analytics.max_rows = 500_000
    assert report is not None
    assert report.query_errors == []
    cut = [d for _, d in probe.failures if isinstance(d["error"], QueryIncomplete)]
    assert cut, "no answer was cut at the row limit"
    world.figures.faults = len(cut)
    record(world)
    world.assert_invariants()


@full_only
def test_persistent_partial_result_gives_up_without_moving_the_watermark(
    devstack: Devstack, record: Record
) -> None:
    """A result that is partial however small the window: bounded work, then the next tick retries."""
    world = World(devstack, "query partial every time, then healthy", "Log Analytics")
    world.figures.fault_kinds = ["partial"]
    now = start_time()
    world.standard(now)
    devstack.log_analytics.set_fault("partial", match=DETECTION_QUERY)
    first = world.tick(now)
    devstack.log_analytics.clear_faults()
    # every query but the service clock's was answered partial
    faulted = devstack.log_analytics.fault_log
    assert faulted == ["partial"] * (devstack.log_analytics.query_count - 1), faulted
    assert first is not None
    assert len(first.query_errors) == len(DETECTIONS)
    assert world.watermarks[-1] == {d.id: None for d in DETECTIONS}
    # Halving stops at a 1 s window and gives up on the first half that cannot be split: about
    # log2(24 h / 1 s) = 17 queries per detection, not a number that grows with the rows.
    assert devstack.log_analytics.query_count <= 1 + 25 * len(DETECTIONS)
    world.tick(now + TICK)
    record(world)
    world.assert_invariants()
