"""Every detection's own cases, run through its real KQL on the local engine; catalogue invariants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.local_reader import LocalLogsReader
from devstack.loganalytics import LogAnalyticsServer
from monitors.detections import DETECTIONS
from monitors.detections.base import Case, Detection
from monitors.pipeline import run_detection
from monitors.watermark import Window

NOW = datetime.now(UTC)
# The cases' rows carry TimeGenerated in late 2026; a window this wide covers them whatever today is.
WINDOW = Window(start=NOW - timedelta(minutes=30), end=NOW, earliest_time=datetime(2000, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> LogAnalyticsServer:
    return LogAnalyticsServer("cases", state_dir=tmp_path_factory.mktemp("engine"))


CASES = [pytest.param(d, c, id=f"{d.id}: {c.name}") for d in DETECTIONS for c in d.cases]


@pytest.mark.parametrize(("detection", "case"), CASES)
def test_detection_case(detection: Detection, case: Case, engine: LogAnalyticsServer) -> None:
    engine.clear()
    for table, rows in case.rows.items():
        engine.ingest(
            table, [{**row, "_IngestionTime": (NOW - timedelta(minutes=5)).isoformat()} for row in rows]
        )
    run = run_detection(detection, LocalLogsReader(engine), WINDOW, case.context, NOW)
    assert run.skipped == 0, run.skip_reasons
    assert len(run.findings) == case.findings
    for finding in run.findings:
        assert finding.detection == detection.id
        assert detection.severity.at_least(finding.severity)  # declared severity is the ceiling
        assert finding.event_ids


def test_catalogue_invariants() -> None:
    """Collect every offender before failing, so one run shows everything to fix."""
    problems = []
    ids = [d.id for d in DETECTIONS]
    problems += [f"duplicate id {i}" for i in set(ids) if ids.count(i) > 1]
    for d in DETECTIONS:
        if not re.fullmatch(r"[a-z]+(-[a-z]+)+", d.id):
            problems.append(f"{d.id}: id must be kebab-case")
        for name in ("title", "description", "runbook", "false_positives", "mitre"):
            if not getattr(d, name):
                problems.append(f"{d.id}: {name} is empty")
        if not all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in d.mitre):
            problems.append(f"{d.id}: MITRE ids must look like T1078.004")
        if not Path(d.query_file).is_file():
            problems.append(f"{d.id}: {d.query_file} is missing")
        if not any(c.findings > 0 for c in d.cases):
            problems.append(f"{d.id}: no case that fires")
        if not any(c.findings == 0 for c in d.cases):
            problems.append(f"{d.id}: no case that must not fire")
    assert not problems, "\n".join(problems)
