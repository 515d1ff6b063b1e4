"""A burst: thousands of break-glass events in one tick become a bounded number of Teams
messages (one alert part per 200 events), each under 28 KB, together covering every event once."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import pytest

from devstack.stack import Devstack
from devstack.teams_sink import MAX_BODY_BYTES
from monitors.alerts import MAX_EVENTS_PER_ALERT
from tests.reliability.harness import FULL, Figures, World, start_time

Record = Callable[[World | Figures], Figures]


@pytest.mark.parametrize("events", [1_000, pytest.param(10_000, marks=FULL)])
def test_burst_of_break_glass_events(devstack: Devstack, record: Record, events: int) -> None:
    world = World(devstack, f"burst of {events:,} break-glass sign-ins in one tick", "Scale")
    now = start_time()
    ids = [f"burst-{n:05d}" for n in range(events)]
    rows = world.bg_rows(ids, now - timedelta(minutes=6), now - timedelta(minutes=5))
    for n, row in enumerate(rows):  # ingested over four minutes, all inside one tick's window
        ingested = now - timedelta(minutes=6) + timedelta(milliseconds=24 * n)
        row["_IngestionTime"] = ingested.isoformat()
        world.bg_events[row["Id"]] = ingested
    world.ingest("SigninLogs", rows)
    report = world.tick(now)
    assert report is not None, world.errors
    parts = math.ceil(events / MAX_EVENTS_PER_ALERT)
    world.drain(now)
    figures = record(world)
    world.assert_invariants()
    messages = devstack.teams.messages()
    assert len(messages) == parts  # bounded: one per 200 events
    assert max(m["size"] for m in messages) <= MAX_BODY_BYTES
    assert not devstack.teams.rejected()
    assert figures.history_alerts == parts
    world.figures.notes = f"{len(messages)} messages, largest {max(m['size'] for m in messages):,} bytes"
