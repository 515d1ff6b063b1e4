"""Reliability suite: one devstack for the session, a collector of per-scenario figures.

Figures go to `artifacts/reliability/results.json` (or `$RELIABILITY_RESULTS`) when the session
ends; `tools/reliability_report.py` turns them into RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.stack import Devstack
from tests.reliability.harness import FULL_RUN, Figures, World

REPO = Path(__file__).resolve().parents[2]
RESULTS: list[dict] = []
OUTCOMES = pytest.StashKey[dict[str, pytest.TestReport]]()
_started = time.monotonic()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability_full: only in the full reliability run (make reliability)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without RELIABILITY_FULL=1 (as in `make test`) only the fast subset runs."""
    if FULL_RUN:
        return
    full = [item for item in items if item.get_closest_marker("reliability_full")]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if not item.get_closest_marker("reliability_full")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Keep each phase's outcome on the test, so `record` reports what pytest decided."""
    report = yield
    item.stash.setdefault(OUTCOMES, {})[report.when] = report
    return report


def outcome(node: pytest.Item) -> str:
    """ "pass", "fail" or "known bug" (a strict xfail that failed as expected), as pytest ruled."""
    reports = node.stash.get(OUTCOMES, {})
    if any(r.failed for r in reports.values()):
        return "fail"
    call = reports.get("call")
    if call is not None and hasattr(call, "wasxfail"):
        return "known bug"
    return "pass" if call is not None and call.passed else "fail"


def results_path() -> Path:
    return Path(os.environ.get("RELIABILITY_RESULTS") or REPO / "artifacts" / "reliability" / "results.json")


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    state = tmp_path_factory.mktemp("reliability-devstack")
    with Devstack(state_dir=state, data_dir=state / "logs") as stack:
        # What the Functions host puts in the environment: the identity endpoint and, here, the
        # devstack's CA. The settings themselves are passed to each World explicitly.
        names = {"REQUESTS_CA_BUNDLE": str(stack.certs.ca), **stack.identity.environment()}
        saved = {name: os.environ.get(name) for name in names}
        os.environ.update(names)
        try:
            yield stack
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Callable[[World | Figures], Figures]]:
    """`record(world)` measures and keeps the scenario's figures (call it before asserting)."""
    kept: list[Figures] = []
    started = time.monotonic()

    def keep(source: World | Figures) -> Figures:
        figures = source.measure() if isinstance(source, World) else source
        kept.append(figures)
        return figures

    yield keep
    marker = request.node.get_closest_marker("xfail")
    status = outcome(request.node)  # the call phase is over: its asserts have run
    for figures in kept:
        figures.seconds = round(time.monotonic() - started, 1)
        figures.status = status
        if status == "known bug" and marker is not None:
            figures.known_bug = str(marker.kwargs.get("reason", ""))
        RESULTS.append({**figures.as_dict(), "test": request.node.nodeid})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not RESULTS:
        return
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fuzz = path.with_name("fuzz.json")  # written by the fuzzing suite, when it ran
    payload = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite_seconds": round(time.monotonic() - _started, 1),
        "exit_status": int(exitstatus),
        "run": "full" if FULL_RUN else "fast subset (set RELIABILITY_FULL=1 for all scenarios)",
        "scenarios": RESULTS,
        "fuzz": json.loads(fuzz.read_text()) if fuzz.exists() else None,
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
