"""source-silent end to end: a silent table and failing queries alert once per episode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devstack.stack import Devstack
from monitors.bootstrap import services_from_environment, tick
from monitors.history_store import HistoryQuery, HistoryStore
from monitors.tick import Services


@pytest.fixture
def services(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("SOURCE_SILENT_FAILED_TICKS", "3")
    return services_from_environment()


def source_silent_alerts(services: Services) -> list[dict]:
    rows = HistoryStore(services.store).query(HistoryQuery(limit=200)).rows
    return [r for r in rows if r["Detection"] == "source-silent"]


def test_failing_queries_alert_once_per_episode_and_resolve(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    devstack.log_analytics.set_fault("invalid")  # every query refused until cleared
    try:
        reports = [tick(services, now + timedelta(minutes=5 * n)) for n in range(4)]
    finally:
        devstack.log_analytics.set_fault("none")
    assert all(r.query_errors for r in reports)
    assert [r.alerts_stored for r in reports] == [0, 0, 1, 0]  # the third failing tick, once
    (alert,) = source_silent_alerts(services)
    assert alert["Status"] == "new"
    assert "failed 3 ticks in a row" in json.dumps(devstack.teams.messages()[-1]["card"])

    recovered = tick(services, now + timedelta(minutes=20))
    assert recovered.query_errors == []
    (alert,) = source_silent_alerts(services)
    assert alert["Status"] == "resolved"  # the episode ended; the next one alerts again

    devstack.log_analytics.set_fault("invalid")
    try:
        again = [tick(services, now + timedelta(minutes=25 + 5 * n)) for n in range(3)]
    finally:
        devstack.log_analytics.set_fault("none")
    assert [r.alerts_stored for r in again] == [0, 0, 1]
    assert len(source_silent_alerts(services)) == 2


def test_a_table_gone_quiet_alerts_once(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    for table, ago in (
        ("SigninLogs", timedelta(minutes=10)),
        ("AADNonInteractiveUserSignInLogs", timedelta(minutes=10)),
        ("AzureActivity", timedelta(hours=7)),  # threshold 6 h
    ):
        id_column = "EventDataId" if table == "AzureActivity" else "Id"
        devstack.log_analytics.ingest(
            table,
            [{"TimeGenerated": (now - ago).isoformat(), id_column: f"{table}-1",
              "_IngestionTime": (now - ago).isoformat()}],
        )  # fmt: skip
    first = tick(services, now)
    second = tick(services, now + timedelta(minutes=5))
    assert (first.alerts_stored, second.alerts_stored) == (1, 0)
    (alert,) = source_silent_alerts(services)
    assert alert["Principal"] == "AzureActivity"
