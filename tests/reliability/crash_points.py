"""Where a tick can die, as triggers on the wrapped adapters (see wrappers.Probe).

Order of a tick with the standard data (user-arm-write first, then break-glass-use):
recover -> [watermark read -> query -> seen/baseline read -> per alert: outbox insert ->
history write (main + index copies) -> baseline or seen markers -> outbox flagged committed]
-> watermark write -> ... -> deliver: per alert post -> outbox delete (or update) -> history
delivery record.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.reliability.wrappers import Probe

Arm = Callable[[Probe, Callable[[], None]], None]


def _history_main(details: dict) -> bool:
    return details["entity"]["PartitionKey"] == "alert"


POINTS: dict[str, Arm] = {
    # the query answered; nothing evaluated or stored
    "after query": lambda p, die: p.on("logs.query", die),
    # evaluated, the first alert not yet in the outbox
    "after evaluate": lambda p, die: p.on("store.insert", die, when="before", table="outbox"),
    # the first alert in the outbox, uncommitted
    "after outbox insert": lambda p, die: p.on("store.insert", die, table="outbox"),
    # its history entry written, index copies and dedupe markers not
    "after history write": lambda p, die: p.on("store.replace", die, table="alerts", only=_history_main),
    # a break-glass alert's seen-event markers written, the outbox not flagged committed
    "after seen markers": lambda p, die: p.on("store.upsert_many", die, table="seen"),
    # the first alert committed (outbox flagged), the others not stored
    "after commit": lambda p, die: p.on(
        "store.replace", die, table="outbox", only=lambda d: bool(d["entity"]["Committed"])
    ),
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
