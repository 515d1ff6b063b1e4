"""Where a tick can die, as triggers on the wrapped adapters (see wrappers.Probe).

Order of a tick with the standard data (user-arm-write first, then break-glass-use):
recover -> [watermark read -> query -> seen/baseline read -> the detection's alerts: outbox
inserts -> history writes (main + index copies) -> baseline or seen markers -> outbox flagged
committed; each step for all of them, in batch transactions] -> watermark write -> ... ->
deliver: per alert post -> outbox delete (or update) -> history delivery record.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.reliability.wrappers import Probe

Arm = Callable[[Probe, Callable[[], None]], None]


def _some(details: dict) -> bool:
    """A batched write that writes something (a detection without alerts writes nothing)."""
    return details["count"] > 0


POINTS: dict[str, Arm] = {
    # the query answered; nothing evaluated or stored
    "after query": lambda p, die: p.on("logs.query", die),
    # evaluated, no alert in the outbox yet
    "after evaluate": lambda p, die: p.on(
        "store.insert_many", die, when="before", table="outbox", only=_some
    ),
    # the first detection's alerts in the outbox, uncommitted
    "after outbox insert": lambda p, die: p.on("store.insert_many", die, table="outbox", only=_some),
    # their history entries and index copies written, dedupe markers not
    "after history write": lambda p, die: p.on("store.upsert_many", die, table="alerts", only=_some),
    # break-glass alerts' seen-event markers written, the outbox not flagged committed
    "after seen markers": lambda p, die: p.on("store.upsert_many", die, table="seen", only=_some),
    # the first detection's alerts committed (outbox flagged), the next detection's not stored
    "after commit": lambda p, die: p.on("store.upsert_many", die, table="outbox", only=_some),
    # every alert of the first detection committed, its watermark not moved
    "before watermark": lambda p, die: p.on(
        ("store.insert", "store.replace"), die, when="before", table="watermarks"
    ),
    # the first detection done, the second not started
    "after watermark": lambda p, die: p.on(("store.insert", "store.replace"), die, table="watermarks"),
    # the first alert accepted by Teams, nothing recorded
    "after post": lambda p, die: p.on("teams.post", die, only=lambda d: d["delivered"]),
    # the first alert out of the outbox, its delivery not yet in the history
    "after outbox delete": lambda p, die: p.on("store.delete", die, table="outbox"),
    # the first alert fully delivered and recorded, the others not posted
    "after delivery record": lambda p, die: p.on(
        "store.replace", die, table="alerts", only=lambda d: d["etag"] is not None
    ),
}
