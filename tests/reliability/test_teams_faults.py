"""Teams failing: 429, 5xx, timeouts, 413, down for an hour, and 202 for messages it never shows.

The monitor delivers from its outbox with backoff (30 s doubling to 1 h, never sooner than
Retry-After) and stops posting to a webhook for the rest of a tick once it refused (429, 5xx,
unreachable). The ticks run on a simulated 5-minute schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import requests

from devstack.stack import Devstack
from monitors.adapters.teams import WebhookPoster
from tests.reliability.harness import FULL, TICK, Figures, World, full_only, start_time

Record = Callable[[World | Figures], Figures]


def refused(devstack: Devstack, mode: str) -> int:
    """Posts the sink answered with the injected fault (429, 5xx, reset, 413, 202-then-lost)."""
    return sum(a["outcome"] == f"fault:{mode}" for a in devstack.teams.attempts())


@pytest.mark.parametrize(
    ("mode", "options", "bad_ticks"),
    [
        ("429", {"retry_after": 60}, 2),  # Retry-After 60 s, on two ticks running
        pytest.param("500", {}, 3, marks=FULL),
        ("503", {}, 1),
        pytest.param("down", {}, 3, marks=FULL),  # connection reset
        ("413", {"count": 1}, 1),  # one message refused as too large, then accepted
    ],
)
def test_teams_fault_delays_but_delivers(
    devstack: Devstack, record: Record, mode: str, options: dict, bad_ticks: int
) -> None:
    world = World(devstack, f"Teams {mode} on {bad_ticks} tick(s)", "Teams")
    world.figures.fault_kinds = [mode]
    world.bound_ticks(bad_ticks - 1, f"Teams refuses on {bad_ticks} ticks running")
    now = start_time()
    world.standard(now)
    devstack.teams.set_fault(mode, **options)
    last = world.ticks(now, bad_ticks)
    devstack.teams.clear_faults()
    # One refused post a tick: the webhook is not asked again in the tick that refused (413: the
    # card is halved and posted again at once).
    assert refused(devstack, mode) == bad_ticks, devstack.teams.attempts()
    world.drain(last)
    record(world)
    world.assert_invariants()


def test_teams_timeout_after_the_flow_accepted(devstack: Devstack, record: Record) -> None:
    """The client gives up (timeout) while the flow still accepts the message: sent again later."""
    world = World(devstack, "Teams timeout (the flow accepted after the client gave up)", "Teams")
    world.figures.fault_kinds = ["slow > client timeout"]
    session = requests.Session()
    impatient = world.with_services(teams=WebhookPoster(session, timeout_s=0.5))  # production waits 10 s
    now = start_time()
    world.standard(now)
    devstack.teams.set_fault("slow", count=1, delay=1.0)
    first = world.tick(now, impatient)
    delayed = [a for a in devstack.teams.attempts() if a.get("delayed")]
    assert [a["outcome"] for a in delayed] == ["accepted"]  # the flow took it, after the client left
    assert first is not None
    assert first.delivery_failures >= 1  # the client gave up waiting
    world.drain(now)
    figures = record(world)
    world.assert_invariants()
    assert figures.teams_duplicates <= 1


def _hour_of_break_glass(world: World, start: timedelta = timedelta(0)) -> None:
    """A break-glass sign-in every 15 minutes for an hour, each ingested 2 minutes after it happened."""
    now = start_time()
    for n in range(4):
        happened = now + start + timedelta(minutes=15 * n)
        world.break_glass(f"hour-{n}", happened, happened + timedelta(minutes=2))


@full_only
def test_teams_down_for_an_hour(devstack: Devstack, record: Record) -> None:
    world = World(devstack, "Teams down (connection reset) for an hour", "Teams")
    world.figures.fault_kinds = ["down"]
    world.bound_ticks(11, "Teams is down for an hour, 12 ticks")
    now = start_time()
    _hour_of_break_glass(world)
    devstack.teams.set_fault("down")
    last = world.ticks(now + TICK, 12)  # one hour of ticks, every one refused
    devstack.teams.clear_faults()
    assert refused(devstack, "down") == 12  # one probe a tick, each reset
    world.drain(last, limit=24)
    figures = record(world)
    world.assert_invariants()
    assert figures.max_delay_s is not None


@full_only
def test_teams_accepts_but_never_shows_for_an_hour(devstack: Devstack, record: Record) -> None:
    """202 for every message while the flow is broken: no sender can tell. The history says
    'delivered' (accepted); only the flow's run history shows the failures."""
    world = World(devstack, "Teams answers 202 but shows nothing for an hour", "Teams")
    world.figures.fault_kinds = ["202, never shown"]
    now = start_time()
    _hour_of_break_glass(world)
    devstack.teams.set_fault("lost")
    world.ticks(now + TICK, 12)
    devstack.teams.clear_faults()
    assert refused(devstack, "lost") == 4  # every card answered 202 and dropped
    world.figures.notes = "accepted by the flow, never shown: undetectable by the monitor"
    figures = record(world)
    world.assert_invariants(delivered=False)
    assert figures.accepted_not_shown == 4
    assert figures.delivered == 0
    assert {row["Delivery"] for row in world.history()} == {"delivered"}
    assert not world.outbox()


def test_teams_413_for_large_cards_still_delivers(devstack: Devstack, record: Record) -> None:
    """A flow whose effective limit is below our 28 KB measure refuses every full card (413)."""
    world = World(devstack, "Teams 413 for every card above 16 KB", "Teams")
    world.figures.fault_kinds = ["413 above 16 KB"]
    now = start_time()
    rows = world.bg_rows(
        [f"big-{n}" for n in range(200)], now - timedelta(minutes=9), now - timedelta(minutes=8)
    )
    world.ingest("SigninLogs", rows)
    devstack.teams.set_fault("413", min_bytes=16 * 1024)
    world.tick(now)
    assert refused(devstack, "413") >= 1, "no card was large enough to be refused"
    world.drain(now, limit=6)
    record(world)
    world.assert_invariants()
