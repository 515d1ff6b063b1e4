"""RELIABILITY.md can show a failure: a scenario's status is what pytest ruled after its asserts.

Runs a small pytest session with this suite's hooks and `record` fixture over three scenarios
(one passes, one fails after recording, one is a strict xfail), then renders the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# This suite's hooks and fixture, as a conftest registers them.
CONFTEST = "from tests.reliability.conftest import pytest_runtest_makereport, pytest_sessionfinish, record\n"
SCENARIOS = """
import pytest
from tests.reliability.harness import Figures


def test_holds(record):
    record(Figures(scenario="holds", group="Control"))


def test_breaks_after_recording(record):
    record(Figures(scenario="breaks", group="Control"))
    assert 1 == 2


@pytest.mark.xfail(strict=True, reason="pinned")
def test_pinned_bug(record):
    record(Figures(scenario="pinned", group="Control"))
    assert False
"""


def test_a_failed_scenario_is_reported_as_failed(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_scenarios.py").write_text(SCENARIOS)
    results = tmp_path / "results.json"
    env = {**os.environ, "RELIABILITY_RESULTS": str(results), "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(tmp_path / "test_scenarios.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr  # one test failed
    data = json.loads(results.read_text())
    assert {s["scenario"]: s["status"] for s in data["scenarios"]} == {
        "holds": "pass",
        "breaks": "fail",
        "pinned": "known bug",
    }
    report = tmp_path / "RELIABILITY.md"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "reliability_report.py"), str(results), str(report)],
        check=True, timeout=60,
    )  # fmt: skip
    text = report.read_text()
    assert "**1 failed** (breaks)" in text
    assert "| breaks |" in text
    assert "**FAILED**" in text
