"""Table Storage failing: 5xx, timeouts, lost answers, Azurite restarted mid-tick, two ticks racing.

Faults come from devstack/faulty_proxy.py in front of the session's Azurite; the app reaches
the proxy through STATE_TABLE_ENDPOINT like any endpoint. azure-data-tables retries 500/503/504
three times (POST too), retries a reset connection only for GET/PUT/PATCH/DELETE, and a write
retried after its answer was lost finds the entity already there (409) or its ETag moved (412).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import Azurite, free_port
from devstack.faulty_proxy import FaultyProxy
from devstack.stack import Devstack
from monitors.adapters.table_store import StaleWrite
from monitors.bootstrap import build_services
from monitors.history_store import HistoryStore
from monitors.lease import TTL
from tests.reliability.harness import FULL, TICK, Figures, World, start_time
from tests.reliability.wrappers import Probe, ProbedStore

Record = Callable[[World | Figures], Figures]
M = timedelta(minutes=1)


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
    row: str | None = None  # only requests for this row (the proxy's row_key)


WATERMARK = "break-glass-use"  # the first detection's watermark row

# Paths: POST /<account>/<prefix><table> inserts one entity, PUT/PATCH/DELETE
# /<account>/<prefix><table>(...) changes one, GET reads and queries; the tick's alert writes
# (outbox inserts, history, baseline, seen markers, outbox commit flags) are POST /<account>/$batch
# transactions, matched by the requests inside them, or a single request when a partition gets one
# entity. `guarded_only` keeps a fault to ETag-guarded replaces. The tick lease is a row of the
# watermarks table, read and written first: a watermark fault names its detection's row.
TABLE_FAULTS = [
    TableFault("outbox insert 500 x2 (SDK retries)", "500", "POST", "outbox", count=2),
    TableFault("outbox insert answered 500 after the write", "500-after", "POST", "outbox", fast=True),
    TableFault("history write 503 x2 (SDK retries)", "503", "PUT", "alerts(PartitionKey='alert'", count=2),
    TableFault("watermark read stalled 1 s, connection reset", "stall", "GET", "watermarks", row=WATERMARK),
    TableFault("seen-event claim 503 x4: SDK gives up", "503", "POST", "seen", count=4, tick_fails=True),
    TableFault("seen-event claim connection dropped", "drop", "POST", "seen", tick_fails=True, fast=True),
    TableFault("outbox insert stalled 1 s (timeout)", "stall", "POST", "outbox", tick_fails=True),
    TableFault(
        "watermark insert 503 x4: SDK gives up",
        "503",
        "POST",
        "watermarks",
        count=4,
        tick_fails=True,
        row=WATERMARK,
    ),
    TableFault(
        "watermark insert answered 500 after the write",
        "500-after",
        "POST",
        "watermarks",
        fast=True,
        row=WATERMARK,
    ),
    TableFault(
        "watermark replace answered 500 after the write",
        "500-after",
        "PUT",
        "watermarks",
        warm=True,
        row=WATERMARK,
    ),
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
                           delay=fault.delay, guarded_only=fault.guarded_only, row_key=fault.row)  # fmt: skip
    errors_before = len(world.errors)
    world.tick(now)
    first_failed = len(world.errors) > errors_before
    world.drain(now)
    world.figures.faults = len(behind_proxy.injected())
    if first_failed:
        world.figures.notes = f"first tick failed: {world.errors[0][:160]}"
    record(world)
    assert world.figures.faults == fault.count, "the fault did not fire as planned"
    # A tick stands back only when the tick lease failed it: the fault hit the lease, not its step.
    assert [r.stood_back for r in world.reports if r.stood_back] == [], "the fault hit the tick lease"
    assert first_failed == fault.tick_fails, world.errors
    world.assert_invariants()


# --- Azurite restarted mid-tick (persistent storage: an in-memory Azurite forgets everything)


@pytest.fixture
def persistent_azurite(devstack: Devstack, tmp_path: Path) -> Iterator[Azurite]:
    azurite = Azurite(devstack.certs, port=free_port(), location=tmp_path / "azurite").start()
    yield azurite
    azurite.stop()


@pytest.mark.parametrize("moment", ["between calls", "in the background"])
def test_azurite_restarted_mid_commit(
    devstack: Devstack, persistent_azurite: Azurite, record: Record, moment: str
) -> None:
    """Restarted mid-commit: the first detection's alerts are in the outbox, uncommitted, and
    their history write is next. Synchronously (between two calls), or from another thread while
    the tick carries on: the history write then meets a closed port while Azurite starts again."""
    world = World(devstack, f"Azurite restarted mid-commit, {moment}", "Table Storage",
                  STATE_TABLE_ENDPOINT=persistent_azurite.table_endpoint)  # fmt: skip
    world.figures.fault_kinds = ["restart"]
    now = start_time()
    world.standard(now)
    probe = Probe()
    restarts: list[tuple[int | None, int | None]] = []  # Azurite's process before and after
    calls: list[str] = []  # the tick's calls when the restart began
    stopped, thread = threading.Event(), None

    def restart() -> None:
        before = persistent_azurite.pid
        persistent_azurite.stop()
        stopped.set()
        persistent_azurite.start()
        restarts.append((before, persistent_azurite.pid))

    def restart_here() -> None:
        nonlocal thread
        calls.extend(probe.calls)
        if moment == "between calls":
            restart()
            return
        thread = threading.Thread(target=restart)
        thread.start()
        assert stopped.wait(30), "Azurite did not stop"  # the tick goes on while it is down

    history_write = probe.on("store.upsert_many", restart_here, when="before", table="alerts",
                             only=lambda d: d["count"] > 0)  # fmt: skip
    world.tick(now, world.with_services(store=ProbedStore(world.services.store, probe)))
    if thread is not None:
        thread.join(30)
    assert history_write.fired, f"the tick never wrote to the history: {world.errors}"
    assert calls[-1] == "store.upsert_many:alerts", calls
    assert "store.insert_many:outbox" in calls, "restarted before the alerts were in the outbox"
    assert "store.upsert_many:outbox" not in calls, "restarted after the commit"
    [(old, new)] = restarts
    assert old is not None, "Azurite was not running"
    assert new not in (None, old), "Azurite did not start again"
    world.figures.faults = len(restarts)
    world.drain(now)
    if world.errors:
        world.figures.notes = f"first tick failed: {world.errors[0][:160]}"
    record(world)
    world.assert_invariants()


# --- two ticks racing on the same state (the timer's singleton lock is not a guarantee)
#
# The tick lease keeps a second tick out while the first runs, so two ticks meet on the same
# state only when the first stalls past its lease (4 min) and the next takes it over: both have
# then read the same watermark. The first detection's watermark write is ETag-guarded, and a tick
# confirms its lease just before it stores alerts.

RACE_DETECTION = "break-glass-use"  # the first detection of a tick


def _race_watermark(details: dict[str, Any]) -> bool:
    row = details.get("row_key") or details.get("entity", {}).get("RowKey")
    return details.get("table") == "watermarks" and row == RACE_DETECTION


def _stores_alerts(details: dict[str, Any]) -> bool:
    return details["count"] > 0


class Racer:
    """One tick on a host of its own (its own clients), observed at its watermark write: the
    ETag of the watermark it read, and whether its write returned or raised (`wrote`). `hold`
    keeps it at a step until `release` is set."""

    def __init__(self, name: str, hold: dict[str, Any]) -> None:
        self.name, self.probe = name, Probe()
        self.reached, self.release, self.wrote = threading.Event(), threading.Event(), threading.Event()
        self.read_etags: list[str] = []
        self.claims_held_by_others = 0  # markers its commit found already claimed
        self.thread: threading.Thread | None = None
        self.probe.on(hold.pop("kind"), self._held, **hold)
        for done in ("after", "error"):
            self.probe.on(
                "store.replace", self.wrote.set, when=done, table="watermarks", only=_race_watermark
            )
        self.probe.on("store.get", lambda: None, table="watermarks", only=self._read)
        self.probe.on("store.claim_many", lambda: None, when="after", only=self._claimed)

    def _held(self) -> None:
        self.reached.set()
        if not self.release.wait(60):
            raise TimeoutError(f"{self.name} was never released")

    def _read(self, details: dict[str, Any]) -> bool:
        if _race_watermark(details):
            self.read_etags.append(details["result"]["etag"])
        return False  # observed, nothing to fire

    def _claimed(self, details: dict[str, Any]) -> bool:
        self.claims_held_by_others += len(details["result"])
        return False

    def start(self, world: World, now: datetime) -> None:
        services = build_services(world.settings)
        store = ProbedStore(services.store, self.probe)
        services = world.with_services(store=store, logs=services.logs, teams=services.teams)
        self.thread = threading.Thread(target=world.tick, args=(now, services), name=self.name)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(60)

    def stale_writes(self) -> int:
        """412s its watermark write met (StaleWrite), handled or not."""
        return sum(
            kind == "store.replace" and _race_watermark(d) and isinstance(d["error"], StaleWrite)
            for kind, d in self.probe.failures
        )


def reached(condition: bool, message: str) -> None:
    """The race did not happen as planned: a failure, never the known bug's expected one."""
    if not condition:
        pytest.fail(message)


BEFORE_WATERMARK = {"kind": "store.replace", "when": "before", "table": "watermarks", "only": _race_watermark}
BEFORE_STORING = {"kind": "store.insert_many", "when": "before", "table": "outbox", "only": _stores_alerts}


@pytest.mark.parametrize(
    "race",
    [
        "the successor writes first",
        "the stalled tick writes first",
        "the stalled tick held after its lease check",
    ],
)
def test_two_ticks_racing_to_the_watermark_write(devstack: Devstack, record: Record, race: str) -> None:
    """A tick stalls past its lease; the next tick takes the lease over and reads the same
    watermark before the stalled one writes it. Both reach the ETag-guarded watermark write:
    exactly one wins, the other meets 412 (StaleWrite) and its tick ends; nothing alerts twice.

    Held with its break-glass alerts committed, just before its watermark write (either tick
    writes first): the successor's seen events hold those alerts. Held after its lease check,
    before its outbox write: both read the same seen events before either stored anything; the
    successor's markers claim the events first, so the stalled tick's commit finds its alerts
    duplicates and drops them."""
    world = World(devstack, f"two ticks racing (412 on the watermark), {race}", "Table Storage")
    world.figures.fault_kinds = ["race"]
    now = start_time()
    world.tick(now - 3 * TICK)  # the watermarks exist: both ticks replace them with the ETag they read
    world.standard(now)
    held_early = race.endswith("lease check")
    stalled = Racer("stalled", dict(BEFORE_STORING if held_early else BEFORE_WATERMARK))
    successor = Racer("successor", dict(BEFORE_WATERMARK))
    stalled.start(world, now)
    reached(stalled.reached.wait(60), f"the first tick never reached the step: {world.errors}")
    # Ingested since: the successor's window ends later, so the two writes carry different values.
    world.ordinary_sign_in("later-traffic", now + M)
    successor.start(world, now + TTL + TICK)  # its clock past the stalled tick's lease
    reached(successor.reached.wait(60), f"the successor never reached its watermark write: {world.errors}")
    reached(
        len(stalled.read_etags) == 1 and stalled.read_etags == successor.read_etags,
        f"the ticks read different watermarks: {stalled.read_etags} {successor.read_etags}",
    )
    order = [stalled, successor] if race == "the stalled tick writes first" else [successor, stalled]
    for tick in order:
        tick.release.set()
        reached(tick.wrote.wait(60), f"{tick.name} never finished its watermark write: {world.errors}")
        if held_early:
            tick.join()  # the successor's whole tick, then the stalled one stores what it evaluated
    for tick in order:
        tick.join()
    winner, loser = order
    if held_early:
        reached(loser.claims_held_by_others > 0, "the stalled tick's commit met no claimed marker")
    reached(winner.stale_writes() == 0, f"the first write met a 412: {winner.probe.failures}")
    reached(loser.stale_writes() == 1, f"no 412 at the second write: {loser.probe.failures}")
    reached(
        any(e.startswith("StaleWrite") and RACE_DETECTION in e for e in world.errors),
        f"the loser's tick did not end on the 412: {world.errors}",
    )
    world.figures.faults = winner.stale_writes() + loser.stale_writes()
    world.figures.notes = f"errors: {'; '.join(e[:90] for e in world.errors)}"
    world.drain(now + TTL + TICK)
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
    ack = probe.on("store.get", acknowledge, table="alerts", only=grab)  # the delivery record's read
    world.tick(now, world.with_services(store=ProbedStore(world.services.store, probe)))
    assert ack.fired, "no delivery record was read"
    # the record's ETag-guarded write met the acknowledgement: 412, then read again and re-applied
    stale = [
        d for kind, d in probe.failures if kind == "store.replace" and isinstance(d["error"], StaleWrite)
    ]
    assert len(stale) == 1, probe.failures
    world.drain(now)
    world.figures.faults = len(stale)
    world.figures.notes = "; ".join(e[:120] for e in world.errors)
    figures = record(world)
    world.assert_invariants()
    acknowledged = [r for r in world.history() if r["Status"] == "acknowledged"]
    assert len(acknowledged) == 1
    assert world.errors == []
    assert figures.teams_duplicates == 0
