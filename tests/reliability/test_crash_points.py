"""The process SIGKILLed at every step boundary of a tick, then the next tick on schedule.

Each crash runs in a child process (tests/reliability/crash_child.py) against the same
devstack and state tables; the wrappers kill it with SIGKILL at the chosen step, so nothing
after that point runs: no `finally`, no flush. Then the timer's next tick runs normally here.
A message Teams accepted before the process died can be posted again (at least once): the
figures count those duplicates per crash point.

Every point runs in `make test` too: each costs a child process and one short tick.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.stack import Devstack
from tests.reliability.crash_points import POINTS, observe
from tests.reliability.harness import Figures, World, start_time

REPO = Path(__file__).resolve().parents[2]
Record = Callable[[World | Figures], Figures]
# At most this many extra Teams messages per crash: the one alert whose post was accepted when
# the process died, before the outbox knew. Every other point must cause none.
DUPLICATE_WINDOWS = {"after post": 1}


def crash(world: World, point: str, now: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **world.env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.crash_child", point, now],
        cwd=REPO, env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_at_step_boundary(devstack: Devstack, record: Record, point: str) -> None:
    world = World(devstack, f"SIGKILL {point}", "Process killed")
    world.figures.fault_kinds = ["SIGKILL"]
    now = start_time()
    world.standard(now)
    child = crash(world, point, now.isoformat())
    world.figures.ticks += 1
    assert child.returncode == -signal.SIGKILL, child.stderr.decode(errors="replace")[-2000:]
    # The child says where it dies, then the calls it made: the named trigger killed it, there.
    said = child.stdout.decode(errors="replace").splitlines()
    assert said[:1] == [f"SIGKILL at {point}"], said
    calls = json.loads(said[1])
    assert POINTS[point].died_here(calls), f"died after {calls[-6:]}"
    assert observe(world) == POINTS[point].state, "the tables do not show a death at this point"
    world.figures.faults = said.count(f"SIGKILL at {point}")
    world.drain(now)
    figures = record(world)
    world.assert_invariants()
    assert figures.teams_duplicates <= DUPLICATE_WINDOWS.get(point, 0)
