"""source-silent's silence signal: its rows need ingestion times hours old, which the shared
case runner (every row ingested five minutes ago) cannot give, so they are tested here on the
same local engine and through the same pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.local_reader import LocalLogsReader
from devstack.loganalytics import LogAnalyticsServer
from monitors.detections.base import Context
from monitors.detections.source_silent import DETECTION, query_failure_finding
from monitors.pipeline import run_detection
from monitors.watermark import Window

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = Window(start=NOW - timedelta(minutes=5), end=NOW, earliest_time=NOW - timedelta(hours=48))


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> LogAnalyticsServer:
    return LogAnalyticsServer("silence", state_dir=tmp_path_factory.mktemp("engine"))


def rows(engine: LogAnalyticsServer, table: str, *ingested_ago: timedelta) -> None:
    id_column = "EventDataId" if table == "AzureActivity" else "Id"
    engine.ingest(
        table,
        [
            {
                "TimeGenerated": (NOW - ago - timedelta(minutes=3)).isoformat(),
                id_column: f"{table}-{n}",
                "_IngestionTime": (NOW - ago).isoformat(),
            }
            for n, ago in enumerate(ingested_ago)
        ],
    )


def run(engine: LogAnalyticsServer, context: Context | None = None, window: Window = WINDOW) -> list:
    result = run_detection(DETECTION, LocalLogsReader(engine), window, context or Context(), NOW)
    assert result.skipped == 0, result.skip_reasons
    return list(result.findings)


def test_a_table_quiet_past_its_threshold_alerts_once_per_episode(engine: LogAnalyticsServer) -> None:
    rows(engine, "SigninLogs", timedelta(hours=5), timedelta(hours=3))  # threshold 2 h
    rows(engine, "AADNonInteractiveUserSignInLogs", timedelta(minutes=20))
    rows(engine, "AzureActivity", timedelta(hours=5))  # threshold 6 h: still fine
    rows(engine, "AuditLogs", timedelta(hours=20))  # threshold 24 h: still fine
    (finding,) = run(engine)
    assert finding.principal.label == "SigninLogs"
    assert finding.principal.episode == f"silent after {(NOW - timedelta(hours=3)).isoformat()}"
    assert dict(finding.facts)["Silent for"] == "3.0 h"
    assert finding.headline == "Log source silent: SigninLogs has received no rows for 3.0 h"

    # The next tick sees the same silence: same episode, known by then, no second alert.
    later = Window(start=NOW - timedelta(minutes=1), end=NOW, earliest_time=NOW - timedelta(hours=48))
    assert run(engine, Context(known_principals=frozenset({finding.principal.key})), later) == []

    # Rows come back, then stop again: a new episode alerts again.
    rows(engine, "SigninLogs", timedelta(minutes=150))
    (again,) = run(engine, Context(known_principals=frozenset({finding.principal.key})))
    assert again.principal.key != finding.principal.key


def test_thresholds_come_from_the_context_and_zero_switches_a_table_off(engine: LogAnalyticsServer) -> None:
    rows(engine, "SigninLogs", timedelta(hours=3))
    rows(engine, "AADNonInteractiveUserSignInLogs", timedelta(hours=3))
    rows(engine, "AzureActivity", timedelta(hours=3))
    rows(engine, "AuditLogs", timedelta(hours=3))
    hours = (
        ("SigninLogs", 4),
        ("AADNonInteractiveUserSignInLogs", 0),
        ("AzureActivity", 1),
        ("AuditLogs", 2),
    )
    found = run(engine, Context(silence_hours=hours))
    assert sorted(f.principal.label for f in found) == ["AuditLogs", "AzureActivity"]


def test_an_empty_table_is_not_reported_until_another_has_delivered_for_a_day(
    engine: LogAnalyticsServer,
) -> None:
    """A workspace or a diagnostic setting just set up says nothing yet."""
    rows(engine, "SigninLogs", timedelta(hours=20), timedelta(minutes=3))
    assert run(engine) == []


def test_a_table_with_no_row_while_another_delivers_names_the_category_once(
    engine: LogAnalyticsServer,
) -> None:
    """The Entra setting exports sign-ins but not non-interactive sign-ins, and AuditLogs is not
    watched on purpose: one alert, for the missing category; once per table."""
    rows(engine, "SigninLogs", timedelta(hours=30), timedelta(minutes=3))
    rows(engine, "AzureActivity", timedelta(hours=2))
    hours = (
        ("SigninLogs", 2),
        ("AADNonInteractiveUserSignInLogs", 2),
        ("AzureActivity", 6),
        ("AuditLogs", 0),
    )
    (finding,) = run(engine, Context(silence_hours=hours))
    assert finding.principal.label == "AADNonInteractiveUserSignInLogs"
    assert finding.headline == (
        "Log source missing: AADNonInteractiveUserSignInLogs has no rows while other tables do; "
        "enable NonInteractiveUserSignInLogs in Entra ID's diagnostic setting"
    )
    facts = dict(finding.facts)
    assert facts["No rows since"] == f"{WINDOW.earliest_time.isoformat()} (the whole lookback)"
    assert facts["Blind to"] == "non-interactive sign-ins (refresh tokens, scripts)"
    known = Context(silence_hours=hours, known_principals=frozenset({finding.principal.key}))
    assert run(engine, known) == []


def test_a_silence_that_began_before_the_lookback_is_reported(engine: LogAnalyticsServer) -> None:
    """The monitor was down for three days; AzureActivity stopped while it was: on its first tick
    back the table has no row in the lookback, and the other tables have been delivering."""
    rows(engine, "SigninLogs", timedelta(hours=40), timedelta(minutes=2))
    rows(engine, "AADNonInteractiveUserSignInLogs", timedelta(hours=40), timedelta(minutes=2))
    rows(engine, "AuditLogs", timedelta(hours=40), timedelta(hours=1))
    rows(engine, "AzureActivity", timedelta(days=3))  # before the 48 h lookback
    (finding,) = run(engine)
    assert finding.principal.label == "AzureActivity"
    assert finding.headline.startswith("Log source missing: AzureActivity has no rows while other tables do")


def test_query_failures_are_one_episode_from_their_first_failure() -> None:
    since = NOW - timedelta(minutes=15)
    finding = query_failure_finding(
        "11111111-2222-4333-8444-555555555555", since, 3, ["user-arm-write: HTTP 403"], NOW
    )
    assert finding.detection == "source-silent"
    assert finding.principal.episode == f"queries failing since {since.isoformat()}"
    assert dict(finding.facts)["Latest errors"] == "user-arm-write: HTTP 403"
    assert finding.event_ids


def test_a_written_diagnostic_setting_is_its_own_episode_and_says_what_to_check(
    engine: LogAnalyticsServer,
) -> None:
    """A write may have removed a category or moved the destination: it alerts, named as a write."""
    from monitors.detections.source_silent import _activity

    rows(engine, "SigninLogs", timedelta(minutes=3))
    recent = {
        "TimeGenerated": (NOW - timedelta(minutes=4)).isoformat(),
        "_IngestionTime": (NOW - timedelta(minutes=2)).isoformat(),
    }
    written = {**_activity("w1", "microsoft.aadiam/diagnosticSettings/write", correlation="op-w"), **recent}
    deleted = {**_activity("d1", "microsoft.aadiam/diagnosticSettings/delete", correlation="op-d"), **recent}
    engine.ingest("AzureActivity", [written, deleted])
    found = {f.principal.episode: f for f in run(engine)}
    assert set(found) == {"diagnostic setting written op-w", "diagnostic setting deleted op-d"}
    write = found["diagnostic setting written op-w"]
    assert write.headline == (
        "Diagnostic setting written by mallory@contoso.com: check its categories and destination"
    )
    assert dict(write.facts)["Written by"] == "mallory@contoso.com"
    assert found["diagnostic setting deleted op-d"].headline.startswith("Diagnostic setting deleted by")
