"""`python -m monitors status`: the monitor's own health, read from the devstack's state tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devstack.stack import Devstack
from monitors.bootstrap import services_from_environment, tick
from monitors.cli import main
from monitors.detections.break_glass_use import sign_in_row

LATEST_INGESTION_QUERY = "LatestIngestion = max"  # text only in the service-clock query


def ordinary_sign_in(devstack: Devstack, ingested: datetime) -> None:
    row = sign_in_row("status-ordinary", "0d4c5a1e-8f3b-4b6a-9c2d-7e1f0a9b8c7d", "megan@contoso.com")
    devstack.log_analytics.ingest(
        "SigninLogs",
        [
            {
                **row,
                "TimeGenerated": (ingested - timedelta(minutes=1)).isoformat(),
                "_IngestionTime": ingested.isoformat(),
            }
        ],
    )


def status(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["status", "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_before_any_tick_the_status_says_so(app_env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, found = status(capsys)
    assert code == 1
    assert found["problems"] == ["no tick has succeeded yet"]
    assert all(d["ingested_up_to"] is None for d in found["detections"])


def test_after_a_clean_tick_the_monitor_is_healthy(
    app_env: dict, devstack: Devstack, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    ordinary_sign_in(devstack, now - timedelta(minutes=3))
    report = tick(services_from_environment(), now)
    assert report.query_errors == []
    code, found = status(capsys)
    assert (code, found["problems"]) == (0, [])
    assert found["last_success_at"] == now.isoformat()
    assert found["last_outcome"] == "ok"
    assert found["lease_holder"] is None  # released at the end of the tick
    lags = {d["detection"]: d["lag_s"] for d in found["detections"]}
    assert lags["break-glass-use"] is not None
    assert 0 < lags["break-glass-use"] < 600  # the window ends at the newest ingestion time


def test_failing_queries_show_as_problems(
    app_env: dict, devstack: Devstack, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    ordinary_sign_in(devstack, now - timedelta(minutes=3))
    services = services_from_environment()
    tick(services, now)
    devstack.log_analytics.set_fault("500", count=1000, match=LATEST_INGESTION_QUERY)
    try:
        for n in range(1, 4):
            assert tick(services, now + timedelta(minutes=5 * n)).query_errors  # the fault fired
    finally:
        devstack.log_analytics.clear_faults()
    code, found = status(capsys)
    assert code == 1
    assert found["consecutive_failures"] == 3
    assert found["last_outcome"] == "1 failed query"
    assert found["last_success_at"] == now.isoformat()  # the last success survives failed ticks
    assert any(p.startswith("queries failed 3 ticks in a row: latest-ingestion") for p in found["problems"])
    code = main(["status"])
    text = capsys.readouterr().out
    assert code == 1
    assert "problems:" in text
    assert "failing ticks   3" in text


def test_detections_that_cannot_move_forward_are_one_problem(
    app_env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty workspace: the windows hold a day back, every detection is behind (one line)."""
    tick(services_from_environment(), datetime.now(UTC))
    code, found = status(capsys)
    assert code == 1
    (behind,) = found["problems"]
    assert behind.startswith(
        f"{len(found['detections'])} detections read more than 30 min behind (up to 24.0 h)"
    )
