"""Generated tenants through the real tick: each principal alerts for exactly the detections the
manifest expects, once per event, covering exactly the rows the answer key names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.stack import Devstack
from devstack.tenant import USER_SERVICE_ACCOUNT, generate, service_health_row
from monitors.bootstrap import services_from_environment, tick
from monitors.detections import DETECTIONS
from monitors.history_store import HistoryQuery, HistoryStore

SEEDS = (11, 23)
# Rows the workspace would ingest after the tick arrive this long before it, so the tick can read
# them: a refusal a person may still answer is read entra.STEP_UP_SETTLE (15 min) late.
ARRIVED_BY = timedelta(minutes=30)


def window_crossing_midnight() -> datetime:
    """Today's (or, before then, yesterday's) noon UTC. The never-drilled break-glass account is
    alerted by the drill check, which runs only in the window that crosses a UTC midnight; this
    tick's first window is [now - 24 h, now - 2 min] (the rows' ingestion time), which fits inside
    one UTC day when now is 00:02-00:30: with the wall clock, the test failed in that half hour."""
    now = datetime.now(UTC)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon if noon <= now else noon - timedelta(days=1)


def alerted_events(store: HistoryStore) -> dict[tuple[str, str], list[tuple[str, ...]]]:
    """(detection, principal's object id or UPN) -> the event ids of each of its alerts."""
    found: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    after = None
    while True:
        page = store.query(HistoryQuery(limit=200, after=after))
        for row in page.rows:
            stored = store.get(row["RowKey"])
            assert stored is not None, row["RowKey"]
            finding = stored[1].finding
            found.setdefault((finding.detection, finding.principal.identity), []).append(finding.event_ids)
        if page.next_after is None:
            return found
        after = page.next_after


@pytest.mark.parametrize("seed", SEEDS)
def test_alerts_match_the_tenant_answer_key(
    seed: int, devstack: Devstack, app_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = window_crossing_midnight()
    # A day of rows up to now, each ingested with the latency the generator gave it (a minute or
    # two for sign-ins, up to 20 min for the Activity Log, now and then hours late), inside the
    # tick's first window: ingestion times (now - 24 h - 2 min, now - 2 min].
    generate(tmp_path, users=60, days=1, seed=seed, start=now - timedelta(hours=24))
    manifest = json.loads((tmp_path / "tenant.json").read_text())
    arrived_by = now - ARRIVED_BY
    for table_file in tmp_path.glob("*.jsonl"):
        rows = [json.loads(line) for line in table_file.open()]
        for row in rows:
            ingested = datetime.fromisoformat(row["_IngestionTime"])
            row["_IngestionTime"] = min(ingested, arrived_by).isoformat()
        devstack.log_analytics.ingest(table_file.stem, rows)
    # The workspace keeps receiving rows up to the tick (the tick's window ends at the newest).
    heartbeat = service_health_row(now - timedelta(minutes=3), manifest["tenant"]["subscriptions"][0])
    devstack.log_analytics.ingest(
        "AzureActivity", [{**heartbeat, "_IngestionTime": heartbeat["TimeGenerated"]}]
    )
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", ",".join(a["object_id"] for a in manifest["break_glass"]))

    services = services_from_environment()
    report = tick(services, now)
    assert report.query_errors == []
    assert report.skipped_rows == {d.id: 0 for d in DETECTIONS}

    expected = {
        (detection, p["object_id"]): set(ids)
        for p in manifest["principals"]
        for detection, ids in p["expected_events"].items()
    }
    alerted = alerted_events(HistoryStore(services.store))
    assert sorted(alerted) == sorted(expected)
    problems = []
    for key, alerts in alerted.items():
        events = [event for ids in alerts for event in ids]
        if len(events) != len(set(events)):
            problems.append(f"{key}: an event in two alerts: {alerts}")
        want = expected[key]
        if not want:
            continue  # nothing in the rows: the detection names its own event (an overdue drill)
        # user-service-account lists the user's recent sign-ins of any kind, not just those scored
        covered = set(events) >= want if key[0] == USER_SERVICE_ACCOUNT else set(events) == want
        if not covered:
            problems.append(f"{key}: expected {sorted(want)}, alerted {sorted(set(events))}")
    assert problems == []
    # every detection the generator scripts fires (source-silent's silence part is a unit test)
    assert {d.id for d in DETECTIONS} <= {detection for detection, _ in alerted}
    assert len(devstack.teams.messages()) == sum(len(alerts) for alerts in alerted.values())
    assert devstack.teams.rejected() == []
