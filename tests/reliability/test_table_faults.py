"""Table Storage failing: 5xx, timeouts, lost answers, Azurite restarted mid-tick, two ticks racing.

Faults come from devstack/faulty_proxy.py in front of the session's Azurite; the app reaches
the proxy through STATE_TABLE_ENDPOINT like any endpoint. azure-data-tables retries 500/503/504
three times (POST too), retries a reset connection only for GET/PUT/PATCH/DELETE, and a write
retried after its answer was lost finds the entity already there (409) or its ETag moved (412).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from devstack.azurite import Azurite, free_port
from devstack.faulty_proxy import FaultyProxy
from devstack.stack import Devstack
from monitors.bootstrap import build_services
from monitors.history_store import HistoryStore
from tests.reliability.harness import FULL, TICK, Figures, World, start_time
from tests.reliability.wrappers import Probe, ProbedStore

Record = Callable[[World | Figures], Figures]


@pytest.fixture(scope="module")
def proxy(devstack: Devstack) -> Iterator[FaultyProxy]:
    with FaultyProxy(devstack.azurite.port, devstack.state_dir) as running:
        yield running


@pytest.fixture
def behind_proxy(proxy: FaultyProxy) -> Iterator[FaultyProxy]:
    proxy.clear_faults()
    proxy.log.clear()
    yield proxy
    proxy.clear_faults()


@dataclass(frozen=True)
class TableFault:
    name: str
    mode: str
    method: str | None
    match: str
    count: int = 1
    skip: int = 0
    delay: float = 1.0
    tick_fails: bool = False  # what the first tick does (measured, and pinned here)
    fast: bool = False  # part of the fast subset (make test)
    warm: bool = False  # a tick ran before (the watermarks exist: replaced with an ETag, not inserted)
    guarded_only: bool = False  # only an ETag-guarded request (If-Match), never a batch or an upsert


# Paths: POST /<account>/<prefix><table> inserts one entity, PUT/PATCH/DELETE
# /<account>/<prefix><table>(...) changes one, GET reads and queries; the tick's alert writes
# (outbox inserts, history, baseline, seen markers, outbox commit flags) are POST /<account>/$batch
# transactions, matched by the requests inside them, or a single request when a partition gets one
# entity. `guarded_only` keeps a fault to ETag-guarded replaces.
TABLE_FAULTS = [
    TableFault("outbox insert 500 x2 (SDK retries)", "500", "POST", "outbox", count=2),
    TableFault("outbox insert answered 500 after the write", "500-after", "POST", "outbox", fast=True),
    TableFault("history write 503 x2 (SDK retries)", "503", "PUT", "alerts(PartitionKey='alert'", count=2),
    TableFault("watermark read stalled 1 s, connection reset", "stall", "GET", "watermarks"),
    TableFault("seen-event batch 503 x4: SDK gives up", "503", "PUT", "seen(", count=4, tick_fails=True),
    TableFault("seen-event batch connection dropped", "drop", "PUT", "seen(", tick_fails=True, fast=True),
    TableFault("outbox insert stalled 1 s (timeout)", "stall", "POST", "outbox", tick_fails=True),
    TableFault(
        "watermark insert 503 x4: SDK gives up", "503", "POST", "watermarks", count=4, tick_fails=True
    ),
    TableFault("watermark insert answered 500 after the write", "500-after", "POST", "watermarks", fast=True),
    TableFault("watermark replace answered 500 after the write", "500-after", "PUT", "watermarks", warm=True),
    # The first delivery record (the first ETag-guarded PUT there; the history writes before it are
    # upserts): the SDK's retry meets our own write (412); the record sees its entry landed.
    TableFault(
        "delivery record answered 500 after the write",
        "500-after",
        "PUT",
        "alerts(PartitionKey='alert'",
        guarded_only=True,
        fast=True,
    ),
    TableFault("outbox delete timed out after the delete", "stall-after", "DELETE", "outbox"),
]


@pytest.mark.parametrize(
    "fault", [pytest.param(f, id=f.name, marks=() if f.fast else FULL) for f in TABLE_FAULTS]
)
def test_table_fault_loses_nothing(
    devstack: Devstack, behind_proxy: FaultyProxy, record: Record, fault: TableFault
) -> None:
    endpoint = behind_proxy.table_endpoint
    world = World(devstack, f"table: {fault.name}", "Table Storage", STATE_TABLE_ENDPOINT=endpoint)
    world.figures.fault_kinds = [fault.mode]
    now = start_time()
    if fault.warm:
        world.tick(now - 3 * TICK)
        world.figures.ticks -= 1  # setup, not part of the scenario
    world.standard(now)
    behind_proxy.add_fault(fault.mode, fault.count, method=fault.method, match=fault.match, skip=fault.skip,
                           delay=fault.delay, guarded_only=fault.guarded_only)  # fmt: skip
    errors_before = len(world.errors)
    world.tick(now)
    first_failed = len(world.errors) > errors_before
    world.drain(now)
    world.figures.faults = len(behind_proxy.injected())
    if first_failed:
        world.figures.notes = f"first tick failed: {world.errors[0][:160]}"
    record(world)
    assert world.figures.faults == fault.count, "the fault did not fire as planned"
    assert first_failed == fault.tick_fails, world.errors
    world.assert_invariants()


# --- Azurite restarted mid-tick (persistent storage: an in-memory Azurite forgets everything)


@pytest.fixture
def persistent_azurite(devstack: Devstack, tmp_path: Path) -> Iterator[Azurite]:
    azurite = Azurite(devstack.certs, port=free_port(), location=tmp_path / "azurite").start()
    yield azurite
    azurite.stop()


def _restart(azurite: Azurite) -> None:
    azurite.stop()
    azurite.start()


@pytest.mark.parametrize("moment", ["between calls", pytest.param("in the background", marks=FULL)])
def test_azurite_restarted_mid_tick(
    devstack: Devstack, persistent_azurite: Azurite, record: Record, moment: str
) -> None:
    """Restarted when the first alert is written to the history: synchronously (between two calls)
    or from another thread while the tick carries on (its next calls meet a closed port)."""
    world = World(devstack, f"Azurite restarted mid-tick, {moment}", "Table Storage",
                  STATE_TABLE_ENDPOINT=persistent_azurite.table_endpoint)  # fmt: skip
    world.figures.fault_kinds = ["restart"]
    now = start_time()
    world.standard(now)
    probe = Probe()
    restarts: list[threading.Thread] = []

    def restart() -> None:
        if moment == "between calls":
            _restart(persistent_azurite)
        else:
            thread = threading.Thread(target=_restart, args=(persistent_azurite,))
            restarts.append(thread)
            thread.start()

    probe.on("store.replace", restart, when="before", table="alerts")
    world.tick(now, world.with_services(store=ProbedStore(world.services.store, probe)))
    for thread in restarts:
        thread.join(30)
    world.figures.faults = 1
    world.drain(now)
    if world.errors:
        world.figures.notes = f"first tick failed: {world.errors[0][:160]}"
    record(world)
    world.assert_invariants()


# --- two ticks racing on the same state (the timer's singleton lock is not a guarantee)


def test_two_ticks_racing_alert_once(devstack: Devstack, record: Record) -> None:
    """Both ticks read the watermark and the seen events before either commits (each waits for the
    other at its first outbox insert, up to 5 s), as two hosts firing the same schedule would."""
    world = World(devstack, "two ticks racing (412 on the watermark)", "Table Storage")
    world.figures.fault_kinds = ["race"]
    now = start_time()
    world.tick(now - 3 * TICK)  # the watermarks exist: the loser meets a stale ETag (412)
    world.standard(now)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def meet() -> None:
        # the other tick may never get this far (it stood back): then carry on alone
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)

    def run(offset_ms: int) -> None:
        probe = Probe()
        probe.on("store.insert", meet, when="before", table="outbox")
        services = build_services(world.settings)  # a second host: its own clients
        services = world.with_services(store=ProbedStore(services.store, probe), logs=services.logs)
        report = world.tick(now + timedelta(milliseconds=offset_ms), services)
        results.append("ok" if report is not None else "failed")

    threads = [threading.Thread(target=run, args=(ms,)) for ms in (0, 700)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    world.drain(now + TICK)
    world.figures.faults = 1
    world.figures.notes = f"ticks: {sorted(results)}; errors: {'; '.join(e[:90] for e in world.errors)}"
    record(world)
    world.assert_invariants()


def test_ack_racing_the_delivery_record(devstack: Devstack, record: Record) -> None:
    """On-call acknowledges an alert from the history page while the tick records its delivery."""
    world = World(devstack, "acknowledged while its delivery is recorded (412)", "Table Storage")
    world.figures.fault_kinds = ["412 ack race"]
    now = start_time()
    world.standard(now)
    history = HistoryStore(world.services.store)
    read: dict = {}

    def grab(details: dict) -> bool:
        read.update(details.get("result") or {})
        return read.get("PartitionKey") == "alert"

    def acknowledge() -> None:
        history.set_status(read["RowKey"], "acknowledged", by="oncall@contoso.com", note="on it", now=now)

    probe = Probe()
    probe.on("store.get", acknowledge, table="alerts", only=grab)  # the delivery record's read
    world.tick(now, world.with_services(store=ProbedStore(world.services.store, probe)))
    world.drain(now)
    world.figures.faults = 1
    world.figures.notes = "; ".join(e[:120] for e in world.errors)
    figures = record(world)
    world.assert_invariants()
    acknowledged = [r for r in world.history() if r["Status"] == "acknowledged"]
    assert len(acknowledged) == 1
    assert world.errors == []
    assert figures.teams_duplicates == 0
