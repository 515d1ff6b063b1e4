"""Where a tick can die, as triggers on the wrapped adapters (see wrappers.Probe).

Order of a tick with the standard data (break-glass-use first, then user-arm-write):
take the lease -> recover -> service-clock query -> [watermark read -> query -> seen/baseline
read -> lease confirmed -> the detection's alerts: outbox inserts -> history writes (main +
index copies) -> baseline or seen markers -> outbox flagged committed; each step for all of
them, in batch transactions -> watermark write] -> deliver what it stored: per alert post ->
outbox delete (or update) -> history delivery record -> ... the next detections.

Each point also says how the process must have died there, so a trigger that matches another
call of the same kind (the tick lease lives in the watermarks table too) fails the test: `at`,
the call it died at or after (a pattern of its label in Probe.calls), `after`, a call that came
before it, and `state`, what the tables and the Teams sink hold when it is dead (see `observe`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitors.lease import ROW_KEY as LEASE
from tests.reliability.wrappers import Probe

if TYPE_CHECKING:  # the crash child imports this module, and needs no devstack
    from tests.reliability.harness import World

Arm = Callable[[Probe, Callable[[], None]], None]
FIRST = "break-glass-use"  # the first detection to run (critical first); it stores two alerts


@dataclass(frozen=True, slots=True)
class State:
    """What a dead tick left behind (standard data: two break-glass alerts, then two users)."""

    outbox: int  # entries in the outbox
    committed: int  # of which flagged committed
    history: int  # alerts in the history
    watermark_moved: bool  # the first detection's watermark written
    posted: int  # messages the Teams sink accepted
    recorded: int  # history alerts whose delivery is recorded


def observe(world: World) -> State:
    outbox = world.outbox()
    history = world.history()
    return State(
        outbox=len(outbox),
        committed=sum(bool(e["Committed"]) for e in outbox),
        history=len(history),
        watermark_moved=world.read_watermarks()[FIRST] is not None,
        posted=len(world.devstack.teams.messages()),
        recorded=sum(row["Delivery"] == "delivered" for row in history),
    )


@dataclass(frozen=True, slots=True)
class Point:
    arm: Arm
    at: str
    after: str
    state: State

    def died_here(self, calls: list[str]) -> bool:
        """The last call made is the one named, and the step before it happened."""
        return (
            bool(calls)
            and re.fullmatch(self.at, calls[-1]) is not None
            and any(re.fullmatch(self.after, call) for call in calls[:-1])
        )


def _some(details: dict[str, Any]) -> bool:
    """A batched write that writes something (a detection without alerts writes nothing)."""
    return details["count"] > 0


def _detection_query(details: dict[str, Any]) -> bool:
    """A detection's query, not the tick's service-clock query (monitors/latest_ingestion.kql)."""
    return "WatermarkStart" in details["kql"]


def _watermark(details: dict[str, Any]) -> bool:
    """A detection's watermark, not the tick lease in the same table."""
    return details["entity"]["RowKey"] != LEASE


_WATERMARK_WRITE = rf"store\.(insert|replace):watermarks/{FIRST}"
_NOTHING = State(0, 0, 0, False, 0, 0)
_COMMITTED = State(2, 2, 2, False, 0, 0)
_DONE = State(2, 2, 2, True, 0, 0)

POINTS: dict[str, Point] = {
    # the first detection's query answered; nothing evaluated or stored
    "after query": Point(
        lambda p, die: p.on("logs.query", die, only=_detection_query),
        at=r"logs\.query:",
        after=rf"store\.get:watermarks/{FIRST}",
        state=_NOTHING,
    ),
    # evaluated, no alert in the outbox yet
    "after evaluate": Point(
        lambda p, die: p.on("store.insert_many", die, when="before", table="outbox", only=_some),
        at=r"store\.insert_many:outbox",
        after=r"store\.query:seen",
        state=_NOTHING,
    ),
    # the first detection's alerts in the outbox, uncommitted
    "after outbox insert": Point(
        lambda p, die: p.on("store.insert_many", die, table="outbox", only=_some),
        at=r"store\.insert_many:outbox",
        after=rf"store\.replace:watermarks/{LEASE}",
        state=State(2, 0, 0, False, 0, 0),
    ),
    # break-glass alerts' seen-event markers claimed, no history entry yet
    "after seen markers": Point(
        lambda p, die: p.on("store.claim_many", die, table="seen", only=_some),
        at=r"store\.claim_many:seen",
        after=r"store\.insert_many:outbox",
        state=State(2, 0, 0, False, 0, 0),
    ),
    # their history entries and index copies written, the outbox not flagged committed
    "after history write": Point(
        lambda p, die: p.on("store.upsert_many", die, table="alerts", only=_some),
        at=r"store\.upsert_many:alerts",
        after=r"store\.claim_many:seen",
        state=State(2, 0, 2, False, 0, 0),
    ),
    # the first detection's alerts committed (outbox flagged), its watermark not moved
    "after commit": Point(
        lambda p, die: p.on("store.upsert_many", die, table="outbox", only=_some),
        at=r"store\.upsert_many:outbox",
        after=r"store\.upsert_many:alerts",
        state=_COMMITTED,
    ),
    # every alert of the first detection committed, its watermark not moved
    "before watermark": Point(
        lambda p, die: p.on(
            ("store.insert", "store.replace"), die, when="before", table="watermarks", only=_watermark
        ),
        at=_WATERMARK_WRITE,
        after=r"store\.upsert_many:outbox",
        state=_COMMITTED,
    ),
    # the first detection done, nothing delivered
    "after watermark": Point(
        lambda p, die: p.on(("store.insert", "store.replace"), die, table="watermarks", only=_watermark),
        at=_WATERMARK_WRITE,
        after=r"store\.upsert_many:outbox",
        state=_DONE,
    ),
    # the first alert accepted by Teams, nothing recorded
    "after post": Point(
        lambda p, die: p.on("teams.post", die, only=lambda d: d["delivered"]),
        at=r"teams\.post:",
        after=_WATERMARK_WRITE,
        state=State(2, 2, 2, True, 1, 0),
    ),
    # the first alert out of the outbox, its delivery not yet in the history
    "after outbox delete": Point(
        lambda p, die: p.on("store.delete", die, table="outbox"),
        at=r"store\.delete:outbox",
        after=r"teams\.post:",
        state=State(1, 1, 2, True, 1, 0),
    ),
    # the first alert fully delivered and recorded, the others not posted
    "after delivery record": Point(
        lambda p, die: p.on("store.replace", die, table="alerts", only=lambda d: d["etag"] is not None),
        at=r"store\.replace:alerts/.+",
        after=r"store\.delete:outbox",
        state=State(1, 1, 2, True, 1, 1),
    ),
}
