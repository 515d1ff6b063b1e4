"""Single faults that once hid break-glass use without any alert, each observed firing.

- A slow query: retried by the SDK past the function timeout, the host killed every tick before
  delivery and before the failure count that feeds source-silent was written.
- The service-clock query (latest ingestion) failing alone: every window stayed empty, and no
  query error was counted, for as long as the fault lasted.
- A crashed tick whose clock ran ahead: its lease, with a far-future expiry, made every later
  tick stand back.
- A tick that stalled past its lease: it still stored the alerts its successor had stored.
- A second too dense for one result (a password spray): the window halved down to one second,
  then gave up every tick; the watermark never moved, and later break-glass use was never read.
- Settings changed while alerts waited for Teams (a webhook renamed or removed, a detection
  switched off): those alerts waited in the outbox for ever, retried as "no longer configured".

Each scenario asserts that its fault fired at the step it names, then that every break-glass
event (or a health alert naming the fault) reached the Teams sink within the bound stated here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devstack.stack import Devstack
from monitors.bootstrap import build_services
from monitors.detections.break_glass_use import BG_ID, BG_UPN, PASSWORD, sign_in_row
from monitors.lease import TTL, Lease
from monitors.model import Finding
from monitors.settings import load_settings
from monitors.tick import TickBudget, TickReport
from tests.reliability.harness import TICK, Figures, World, iso, start_time

REPO = Path(__file__).resolve().parents[2]
Record = Callable[[World | Figures], Figures]
# Text only in one query each: the service-clock query and a slow, non-critical detection's.
LATEST_INGESTION_QUERY = "LatestIngestion = max"
SERVICE_ACCOUNT_QUERY = "PowerPlatform = dynamic"
# The production budget at 1/30 scale: a 540 s function timeout is 18 s here, a 60 s query 2 s.
SCALE = 30
BUDGET = TickBudget(
    function_timeout_s=540 / SCALE,
    query_timeout_s=60 // SCALE,
    retry_window_s=110 / SCALE,
    read_slack_s=10 / SCALE,
    reserve_s=180 / SCALE,
)
# What the service answers for a query that runs 10 minutes (10 scaled seconds x 30): a 504 at
# whatever server timeout the request asked for.
SLOW_QUERY_S = 10.0
M = timedelta(minutes=1)


def source_silent_alerts(world: World) -> list[dict]:
    return [row for row in world.history() if row["Detection"] == "source-silent"]


# --- a slow query


def host_tick(world: World, now_iso: str) -> tuple[str, float]:
    """One tick in a child process killed at the function timeout, as the host does.
    Returns how it ended ("completed", or "killed by the host") and its seconds after loading."""
    env = {**os.environ, **world.env, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.host_child", json.dumps(asdict(BUDGET)), now_iso],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    started = os.times().elapsed
    world.figures.ticks += 1
    try:
        child.wait(timeout=BUDGET.function_timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        world.figures.tick_errors += 1
        return "killed by the host", os.times().elapsed - started
    assert child.returncode == 0
    return "completed", os.times().elapsed - started


def test_a_slow_query_neither_kills_the_tick_nor_hides_break_glass_use(
    devstack: Devstack, record: Record
) -> None:
    """Bound: break-glass use in Teams on the first tick; source-silent naming the slow detection
    on the third (SOURCE_SILENT_FAILED_TICKS); the rest once the query is fast again."""
    world = World(devstack, "slow query: 504 at the server timeout, every tick", "Time budget")
    world.figures.fault_kinds = ["slow query"]
    world.expect_episode("source-silent")
    now = start_time()
    world.standard(now)
    devstack.log_analytics.set_fault("slow", count=1000, delay=SLOW_QUERY_S, match=SERVICE_ACCOUNT_QUERY)
    endings = []
    for n in range(3):
        endings.append(host_tick(world, (now + n * TICK).isoformat()))
        if n == 0:
            bg_in_teams = {
                event
                for row in world.history()
                if row["Detection"] == "break-glass-use" and world.sink_alert_ids()[row["RowKey"]]
                for event in row["payload"]["event_ids"]
            }
            assert bg_in_teams >= set(world.bg_events), "break-glass use not in Teams after the first tick"
    slow_answers = devstack.log_analytics.fault_log.count("slow")
    assert slow_answers >= 3, "the slow query never ran"  # the fault fired, every tick
    assert [how for how, _ in endings] == ["completed"] * 3, endings
    silent = source_silent_alerts(world)
    assert len(silent) == 1, silent
    assert world.sink_alert_ids()[silent[0]["RowKey"]], "source-silent is not in Teams"
    assert "user-service-account" in json.dumps(silent[0]["payload"])
    devstack.log_analytics.clear_faults()
    world.drain(now + 3 * TICK)
    figures = record(world)
    figures.notes = f"tick seconds (of {BUDGET.function_timeout_s:g}): " + ", ".join(
        f"{seconds:.1f}" for _, seconds in endings
    )
    world.assert_invariants()


# --- the service-clock query failing alone


@pytest.mark.parametrize("mode", ["500", "partial"])
def test_the_latest_ingestion_query_failing_alone_is_counted(
    devstack: Devstack, record: Record, mode: str
) -> None:
    """Bound: source-silent naming the query in Teams on the third failing tick; the break-glass
    use of that time on the first tick after the fault ends."""
    world = World(devstack, f"latest-ingestion query {mode}, every tick", "Log Analytics")
    world.figures.fault_kinds = [mode]
    world.bound_ticks(2, "without the newest ingestion time every window holds still for the fault's 3 ticks")
    world.expect_episode("source-silent")
    now = start_time()
    world.standard(now)
    devstack.log_analytics.set_fault(mode, count=1000, match=LATEST_INGESTION_QUERY)
    last = world.ticks(now, 3)
    assert devstack.log_analytics.fault_log.count(mode) >= 3  # the fault fired, once a tick at least
    assert all("latest-ingestion" in " ".join(r.query_errors) for r in world.reports), world.reports
    silent = source_silent_alerts(world)
    assert len(silent) == 1, silent
    assert world.sink_alert_ids()[silent[0]["RowKey"]], "source-silent is not in Teams"
    assert "latest-ingestion" in json.dumps(silent[0]["payload"])
    devstack.log_analytics.clear_faults()
    world.drain(last)
    record(world)
    world.assert_invariants()


# --- the lease


def test_a_far_future_lease_from_a_crashed_tick_is_taken_over(
    devstack: Devstack, record: Record, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound: break-glass use in Teams on the first tick after the crash."""
    world = World(devstack, "crashed tick's lease, its clock 24 h ahead", "Lease")
    world.figures.fault_kinds = ["lease 24 h ahead"]
    now = start_time()
    world.standard(now)
    ahead = now + timedelta(hours=24)
    Lease.acquire(world.services.store, world.settings.workspace_id, ahead)  # and never released
    with caplog.at_level(logging.WARNING, logger="monitors.lease"):
        report = world.tick(now + TICK)
    assert report is not None
    assert report.stood_back is None, report.stood_back
    world.figures.faults = sum("beyond one lease length" in r.getMessage() for r in caplog.records)
    assert world.figures.faults == 1, "the tick never met the far-future lease"
    world.drain(now + TICK)
    record(world)
    world.assert_invariants()


def test_a_tick_that_stalls_past_its_lease_stores_nothing_its_successor_stored(
    devstack: Devstack, record: Record
) -> None:
    """Tick A stalls past its lease between evaluating its rows and storing; tick B, on
    schedule, takes over and alerts. A must not store the same alerts. Bound: B's tick."""
    world = World(devstack, "tick stalls past its lease while the next one runs", "Lease")
    world.figures.fault_kinds = ["stall past lease"]
    now = start_time()
    world.standard(now)
    successor: list[TickReport | None] = []
    check_waivers = world.services.waivers

    def stalling(finding: Finding, at: datetime) -> str | None:
        """A's first finding (break-glass-use runs first) is evaluated; A stalls before storing."""
        if not successor:
            successor.append(world.tick(now + TTL + TICK))
        return check_waivers(finding, at)

    stalled = world.tick(now, world.with_services(waivers=stalling))
    assert successor, "the stall never happened"
    assert successor[0] is not None
    assert successor[0].alerts_stored == 4, successor  # the successor took over and alerted
    assert stalled is not None
    assert "lost the lease" in (stalled.stood_back or ""), stalled
    world.figures.faults = sum("lost the lease" in (r.stood_back or "") for r in world.reports)
    assert stalled.alerts_stored == 0
    world.drain(now + TTL + TICK)
    record(world)
    world.assert_invariants()


# --- settings changed while alerts wait for Teams


def reconfigure(world: World, **changes: str) -> None:
    """The app restarted with changed settings (an empty value removes the setting)."""
    world.env = {name: value for name, value in {**world.env, **changes}.items() if value}
    world.settings = load_settings(world.env)
    world.services = build_services(world.settings)


def test_alerts_for_a_renamed_webhook_go_to_its_new_name(devstack: Devstack, record: Record) -> None:
    """The security channel's webhook moves from _2 to _3 while its alerts wait. Bound: the first
    tick after the change."""
    security = devstack.teams.webhook_url("security")
    world = World(devstack, "webhook renamed (_2 to _3) while alerts wait", "Settings changed",
                  TEAMS_WEBHOOK_URL_2=security, TEAMS_WEBHOOK_MIN_SEVERITY_2="critical")  # fmt: skip
    world.figures.fault_kinds = ["webhook renamed"]
    now = start_time()
    world.standard(now)
    devstack.teams.set_fault("500", name="security")
    world.tick(now)
    waiting = [row for row in world.outbox() if "teams_2" in row["PendingTargets"]]
    assert len(waiting) == 2, world.outbox()  # the fault fired: both break-glass alerts wait for _2
    devstack.teams.clear_faults()
    reconfigure(world, TEAMS_WEBHOOK_URL_2="", TEAMS_WEBHOOK_MIN_SEVERITY_2="",
                TEAMS_WEBHOOK_URL_3=security, TEAMS_WEBHOOK_MIN_SEVERITY_3="critical")  # fmt: skip
    world.figures.faults = 1
    world.tick(now + TICK)
    assert not world.outbox()
    security_cards = [json.dumps(m["card"]) for m in devstack.teams.messages("security")]
    assert len(security_cards) == 2
    assert all(sum(row["RowKey"] in card for card in security_cards) == 1 for row in waiting)
    record(world)
    world.assert_invariants()


def test_alerts_of_a_detection_switched_off_are_still_delivered(devstack: Devstack, record: Record) -> None:
    """Bound: the first tick after Teams is back."""
    world = World(devstack, "detection switched off while its alerts wait", "Settings changed")
    world.figures.fault_kinds = ["detection switched off"]
    now = start_time()
    world.standard(now)
    devstack.teams.set_fault("500")
    world.tick(now)
    waiting = [row for row in world.history() if row["Delivery"] != "delivered"]
    assert {row["Detection"] for row in waiting} >= {"user-arm-write"}  # the fault fired
    devstack.teams.clear_faults()
    reconfigure(world, DISABLED_DETECTIONS="user-arm-write")
    world.figures.faults = 1
    world.drain(now)
    record(world)
    world.assert_invariants()


def test_an_alert_no_webhook_takes_any_more_is_marked_undeliverable(devstack: Devstack) -> None:
    """The only channel for high alerts is removed while they wait: they leave the outbox, and the
    history says why (first tick after the change). The break-glass alerts, which the remaining
    channel has, count as delivered."""
    world = World(devstack, "only webhook for its severity removed", "Settings changed",
                  TEAMS_WEBHOOK_MIN_SEVERITY="critical",
                  TEAMS_WEBHOOK_URL_2=devstack.teams.webhook_url("platform"))  # fmt: skip
    now = start_time()
    world.standard(now)
    devstack.teams.set_fault("500", name="platform")
    world.tick(now)
    assert len(world.outbox()) == 4  # the fault fired: all four wait for _2 (break-glass is in _1 too)
    reconfigure(world, TEAMS_WEBHOOK_URL_2="")
    report = world.tick(now + TICK)
    assert report is not None
    assert report.undeliverable == 2
    assert not world.outbox()
    users = [row for row in world.history() if row["Detection"] == "user-arm-write"]
    assert [row["Delivery"] for row in users] == ["undeliverable"] * 2
    assert all("teams_2 removed" in row["LastDeliveryError"] for row in users)
    break_glass = [row for row in world.history() if row["Detection"] == "break-glass-use"]
    assert [row["Delivery"] for row in break_glass] == ["delivered"] * 2  # teams_1 has them


# --- a second too dense for one result


def test_a_dense_second_is_alerted_and_later_break_glass_use_still_is(
    devstack: Devstack, record: Record
) -> None:
    """A password spray against the break-glass account: more failed sign-ins in one ingestion
    second than a result holds (3 rows here). Bound: the spray's second is a critical alert on the
    first tick; a genuine sign-in ten minutes later, on the tick that reads it."""
    world = World(
        devstack, "dense second: a spray past the result limit, then a real sign-in", "Log Analytics"
    )
    world.figures.fault_kinds = ["dense second"]
    world.expect_episode("source-silent")
    now = start_time()
    sprayed = now - 8 * M
    spray = [
        {**sign_in_row(f"spray-{n}", BG_ID, BG_UPN, "50126", PASSWORD),
         "TimeGenerated": iso(sprayed - M), "_IngestionTime": iso(sprayed)}
        for n in range(7)
    ]  # fmt: skip
    world.ingest("SigninLogs", spray)  # not expected one by one: the second is alerted as a whole
    world.break_glass("genuine", now + 9 * M, now + 10 * M)
    devstack.log_analytics.max_rows = 3
    try:
        first = world.tick(now)
        assert first is not None
        assert first.unread_seconds >= 1, first  # the fault fired: the spray's second did not fit
        world.figures.faults = first.unread_seconds  # seconds too dense to read, as the tick saw them
        dense = [
            row for row in source_silent_alerts(world) if "break-glass-use" in json.dumps(row["payload"])
        ]
        assert len(dense) == 1, source_silent_alerts(world)
        assert dense[0]["Severity"] == "critical"
        assert world.sink_alert_ids()[dense[0]["RowKey"]], "the dense second is not in Teams"
        world.ticks(now + TICK, 3)  # the genuine sign-in is ingested at now + 10 min
    finally:
        devstack.log_analytics.max_rows = 500_000
    record(world)
    world.assert_invariants()
