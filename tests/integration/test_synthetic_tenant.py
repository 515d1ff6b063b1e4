"""A generated tenant through the real tick: exactly the principals the manifest expects alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.stack import Devstack
from devstack.tenant import generate
from monitors.bootstrap import services_from_environment, tick
from monitors.detections import DETECTIONS
from monitors.history_store import HistoryQuery, HistoryStore


def window_crossing_midnight() -> datetime:
    """Today's (or, before then, yesterday's) noon UTC. The never-drilled break-glass account is
    alerted by the drill check, which runs only in the window that crosses a UTC midnight; this
    tick's first window is [now - 24 h, now - 30 min] (the rows' ingestion time), which fits inside
    one UTC day when now is 00:02-00:30: with the wall clock, the test failed in that half hour."""
    now = datetime.now(UTC)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon if noon <= now else noon - timedelta(days=1)


def test_alerts_match_the_tenant_manifest(
    devstack: Devstack, app_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = window_crossing_midnight()
    generate(tmp_path, users=60, days=1, seed=11, start=now - timedelta(hours=26))
    manifest = json.loads((tmp_path / "tenant.json").read_text())
    for table_file in tmp_path.glob("*.jsonl"):
        rows = [json.loads(line) for line in table_file.open()]
        # The tick's first window covers the last 24 hours of ingestion: put every row in it.
        for row in rows:
            row["_IngestionTime"] = (now - timedelta(minutes=30)).isoformat()
        devstack.log_analytics.ingest(table_file.stem, rows)
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", ",".join(a["object_id"] for a in manifest["break_glass"]))

    services = services_from_environment()
    report = tick(services, now)
    assert report.query_errors == []
    assert report.skipped_rows == {d.id: 0 for d in DETECTIONS}

    expected = {(detection, p["object_id"]) for p in manifest["principals"] for detection in p["expected"]}
    history = HistoryStore(services.store).query(HistoryQuery(limit=200)).rows
    # Once-per-episode detections key an alert by principal and episode ("<object id>|<episode>").
    alerted = {(entity["Detection"], entity["PrincipalKey"].split("|")[0]) for entity in history}
    assert alerted == expected
    # every detection the generator scripts fires (source-silent's silence part is a unit test)
    assert {d.id for d in DETECTIONS} <= {detection for detection, _ in alerted}
    assert len(devstack.teams.messages()) == len(history)
    assert devstack.teams.rejected() == []
