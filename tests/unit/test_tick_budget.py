"""The tick's time budget agrees with the host's function timeout and leaves delivery its time."""

from __future__ import annotations

import json
from pathlib import Path

from monitors.tick import DELIVERY_BUDGET_S, TickBudget

REPO = Path(__file__).resolve().parents[2]


def host_timeout_s() -> float:
    hours, minutes, seconds = json.loads((REPO / "host.json").read_text())["functionTimeout"].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_the_budget_is_the_hosts_function_timeout() -> None:
    assert TickBudget().function_timeout_s == host_timeout_s()


def test_a_query_started_at_the_last_moment_still_leaves_delivery_its_time() -> None:
    budget = TickBudget()
    assert budget.detect_s > 0  # queries may start at all
    last_query_ends = budget.detect_s + budget.query_worst_s
    assert budget.function_timeout_s - last_query_ends >= DELIVERY_BUDGET_S
