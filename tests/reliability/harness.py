"""A scenario world: fresh state tables on the shared devstack, log rows with known ingestion
times, ticks on a simulated clock, and the invariants the issue asks for, measured.

What "expected" means: every break-glass event id must be covered by exactly one alert in the
history, and every user account doing ARM writes by exactly one user-arm-write alert (that
detection alerts once per principal, ever). Every alert in the history must reach Teams at
least once. Times are simulated (`now` passed to the tick); the delay to delivery is measured
from a row's ingestion time to the tick that got Teams' 2xx for it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import Devstack
from monitors import watermark
from monitors.adapters.table_store import unpack
from monitors.bootstrap import build_services, tick
from monitors.detections import DETECTIONS
from monitors.detections.break_glass_use import BG_ID, BG_UPN, FIDO2, PASSWORD, sign_in_row
from monitors.detections.break_glass_weak_method import drill_row
from monitors.detections.user_arm_write import AMR, OID, UPN, arm_row
from monitors.settings import load_settings
from monitors.tick import Services, TickReport

BG2_UPN = "bg-admin2@contoso.onmicrosoft.com"  # configured by UPN, signs in with no object id in the log
ADELE = ("9b117c67-170e-4aed-9702-658b3fddc889", "AdeleV@contoso.com")
SVC = ("5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "svc-deploy@contoso.com")
CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
TICK = timedelta(minutes=5)  # the schedule the simulated clock follows
BOUND_TICKS = 3  # every expected alert reaches Teams within this many ticks of a one-tick fault
M = timedelta(minutes=1)
ORDINARY_USER = "0d4c5a1e-8f3b-4b6a-9c2d-7e1f0a9b8c7d"
# Detections that alert once per episode (a silence, failing queries, a drill overdue) rather than
# per event or user. A scenario that causes one declares it (`World.expect_episode`); an episode
# alert nobody declared is an unexpected alert, like any other.
EPISODE_DETECTIONS = frozenset({"source-silent", "break-glass-weak-method"})
_ALERT_ID = re.compile(r"alert (\d{13}-[0-9a-f]{12})")
_prefixes = itertools.count(1)

# `make test` runs a fast subset; `make reliability` sets RELIABILITY_FULL=1 and runs everything.
FULL_RUN = os.environ.get("RELIABILITY_FULL", "") not in ("", "0")
FULL = [pytest.mark.slow, pytest.mark.reliability_full]  # deselected unless FULL_RUN (conftest.py)


def full_only(test: Any) -> Any:
    """Mark a test as part of the full run only (see FULL)."""
    for mark in FULL:
        test = mark(test)
    return test


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Figures:
    """One scenario's numbers, as RELIABILITY.md shows them."""

    scenario: str
    group: str
    faults: int = 0
    fault_kinds: list[str] = field(default_factory=list)
    rows: int = 0
    ticks: int = 0
    tick_errors: int = 0
    expected: int = 0  # break-glass events + user accounts that must alert
    stored: int = 0  # of those, covered by an alert in the history
    history_alerts: int = 0
    history_duplicates: int = 0  # extra alerts for an already covered event or user, or unexpected ones
    delivered: int = 0  # history alerts that reached the Teams sink
    teams_messages: int = 0
    teams_duplicates: int = 0  # messages beyond the first per alert
    accepted_not_shown: int = 0  # 202 from a flow that never posted (invisible to the monitor)
    lost: int = 0  # expected items not in history + history alerts never accepted by Teams
    late_rows: int = 0
    late_rows_missed: int = 0
    max_delay_s: float | None = None
    # Ticks from the first that could read an expected row to the one that delivered its alert
    # (both counted); the bound is BOUND_TICKS, plus the ticks a lasting fault adds.
    max_ticks_to_alert: int | None = None
    bound_ticks: int = 0
    bound_why: str = ""  # why the fault holds alerts back longer than one tick
    seconds: float = 0.0
    status: str = "fail"  # as pytest ruled, set when the test has run: "pass", "fail", "known bug"
    known_bug: str = ""  # the xfail reason
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class World:
    """One scenario on the shared devstack: its own state tables, the query API and sink cleared."""

    def __init__(self, devstack: Devstack, name: str, group: str, **settings: str) -> None:
        self.devstack = devstack
        devstack.log_analytics.clear()
        devstack.log_analytics.clear_faults()
        devstack.log_analytics.fault_log.clear()
        devstack.log_analytics.query_count = 0
        devstack.teams.clear()
        devstack.teams.clear_faults()
        self.env = devstack.app_settings(
            STATE_TABLE_PREFIX=f"r{next(_prefixes)}x{abs(hash(name)) % 10**6}",
            BREAK_GLASS_ACCOUNTS=f"{BG_ID},{BG2_UPN}",
            **settings,
        )
        self.settings = load_settings(self.env)
        # Both emergency accounts passed their drill 12 days ago (not counted as scenario rows): the
        # scenarios are about delivery, so no drill-overdue alert (break-glass-weak-method) joins in.
        drilled = datetime.now(UTC) - timedelta(days=12)
        devstack.log_analytics.ingest(
            "SigninLogs",
            [drill_row("drill-bg1", BG_ID, BG_UPN, drilled), drill_row("drill-bg2", "", BG2_UPN, drilled)],
        )
        self.services = build_services(self.settings)
        self.figures = Figures(scenario=name, group=group)
        self.bg_events: dict[str, datetime] = {}  # event id -> ingestion time
        self.users: dict[str, datetime] = {}  # principal key -> first ingestion time
        self.late: set[str] = set()  # expected items whose rows arrived late
        self.episodes: set[str] = set()  # episode detections the scenario causes (expect_episode)
        self.unexpected: list[str] = []  # alerts that cover nothing expected, as measure() found
        self.reports: list[TickReport] = []
        self.errors: list[str] = []
        self.watermarks: list[dict[str, datetime | None]] = []
        self.tick_times: list[datetime] = []
        self.bound_ticks(0)

    def bound_ticks(self, extra_ticks: int, why: str = "") -> None:
        """The scenario's fault lasts `extra_ticks` ticks beyond its first (why): its bound is
        that many ticks more than BOUND_TICKS."""
        assert extra_ticks == 0 or why, "a longer bound says why"
        self.figures.bound_ticks = BOUND_TICKS + extra_ticks
        self.figures.bound_why = why

    def expect_episode(self, detection: str) -> None:
        """The scenario causes `detection` to alert: at least once, and once per episode."""
        assert detection in EPISODE_DETECTIONS, f"{detection} alerts per event or user, not per episode"
        self.episodes.add(detection)

    # --- log rows

    def ingest(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.devstack.log_analytics.ingest(table, rows)
        self.figures.rows += len(rows)

    def break_glass(
        self,
        event_id: str,
        generated: datetime,
        ingested: datetime,
        *,
        table: str = "SigninLogs",
        failed: bool = False,
        expect: bool = True,
        late: bool = False,
    ) -> None:
        """A sign-in by break-glass account 1 (by object id) or, in the non-interactive table, account 2."""
        if table == "SigninLogs":
            result, details = ("50126", PASSWORD) if failed else ("0", FIDO2)
            row = sign_in_row(event_id, BG_ID, BG_UPN, result, details)
        else:
            row = sign_in_row(event_id, "", BG2_UPN.upper(), "50126" if failed else "0", PASSWORD)
            row["LocationDetails"] = json.dumps(row["LocationDetails"])
        self.ingest(table, [{**row, "TimeGenerated": iso(generated), "_IngestionTime": iso(ingested)}])
        if expect:
            self.bg_events.setdefault(event_id, ingested)
            if late:
                self.late.add(event_id)

    def ordinary_sign_in(self, event_id: str, ingested: datetime) -> None:
        """Background traffic no detection alerts on: what keeps a real workspace's clock moving."""
        row = sign_in_row(event_id, ORDINARY_USER, "megan.bowen@contoso.com")
        stamped = {**row, "TimeGenerated": iso(ingested - M), "_IngestionTime": iso(ingested)}
        self.ingest("SigninLogs", [stamped])

    def bg_rows(self, ids: Iterable[str], generated: datetime, ingested: datetime) -> list[dict[str, Any]]:
        """Many break-glass sign-ins at once (bursts); expected like `break_glass`."""
        rows = []
        for event_id in ids:
            rows.append(
                {**sign_in_row(event_id, BG_ID, BG_UPN), "TimeGenerated": iso(generated),
                 "_IngestionTime": iso(ingested)}
            )  # fmt: skip
            self.bg_events.setdefault(event_id, ingested)
        return rows

    def arm_write(
        self,
        event_id: str,
        user: tuple[str, str],
        generated: datetime,
        ingested: datetime,
        *,
        expect: bool = True,
        late: bool = False,
    ) -> None:
        object_id, upn = user
        claims = {"appid": CLI, AMR: "pwd", UPN: upn, OID: object_id}
        row = arm_row(event_id, upn, claims)
        stamped = {**row, "TimeGenerated": iso(generated), "_IngestionTime": iso(ingested)}
        self.ingest("AzureActivity", [stamped])
        if expect:
            self.users.setdefault(object_id, ingested)
            if late:
                self.late.add(object_id)

    def standard(self, now: datetime) -> None:
        """Two break-glass accounts (5 events, one failure) and two users writing: 4 alerts."""
        for n in range(3):
            generated, ingested = now - timedelta(minutes=9), now - timedelta(minutes=8)
            self.break_glass(f"bg1-{n}", generated, ingested, failed=n == 1)
        for n in range(2):
            self.break_glass(
                f"bg2-{n}", now - timedelta(minutes=7), now - timedelta(minutes=6),
                table="AADNonInteractiveUserSignInLogs", failed=True,
            )  # fmt: skip
        self.arm_write("arm-adele-1", ADELE, now - timedelta(minutes=25), now - timedelta(minutes=7))
        self.arm_write("arm-adele-2", ADELE, now - timedelta(minutes=24), now - timedelta(minutes=7))
        self.arm_write("arm-svc-1", SVC, now - timedelta(minutes=30), now - timedelta(minutes=5))

    # --- ticks

    def tick(self, now: datetime, services: Services | None = None) -> TickReport | None:
        """One tick; an exception is recorded (the Functions host would log it), not raised."""
        self.figures.ticks += 1
        self.tick_times.append(now)
        try:
            report = tick(services or self.services, now)
        except Exception as error:
            self.figures.tick_errors += 1
            self.errors.append(f"{type(error).__name__}: {error}")
            report = None
        else:
            self.reports.append(report)
        self.watermarks.append(self.read_watermarks())
        return report

    def ticks(self, start: datetime, count: int, every: timedelta = TICK) -> datetime:
        """`count` ticks on the schedule from `start`; returns the time of the last."""
        now = start
        for n in range(count):
            now = start + n * every
            self.tick(now)
        return now

    def drain(self, now: datetime, limit: int = 12) -> datetime:
        """Tick on schedule (at least once) until the outbox is empty; returns the last tick time."""
        for n in range(limit):
            if n and not self.outbox():
                break
            now += TICK
            self.tick(now)
        return now

    def with_services(self, **changes: Any) -> Services:
        return replace(self.services, **changes)

    # --- state

    def read_watermarks(self) -> dict[str, datetime | None]:
        return {
            d.id: watermark.read(self.services.store, self.settings.workspace_id, d.id).ingested_up_to
            for d in DETECTIONS
        }

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.services.store.query("outbox", "PartitionKey eq @pk", {"pk": "outbox"}))

    def history(self) -> list[dict[str, Any]]:
        rows = []
        for entity in self.services.store.query("alerts", "PartitionKey eq @pk", {"pk": "alert"}):
            rows.append({**entity, "payload": unpack(entity)})
        return rows

    def sink_alert_ids(self) -> Counter[str]:
        """How many accepted Teams messages carry each alert id."""
        counts: Counter[str] = Counter()
        for message in self.devstack.teams.messages():
            text = " ".join(block.get("text", "") for block in message["card"].get("body", []))
            found = _ALERT_ID.search(text)
            if found:
                counts[found[1]] += 1
        return counts

    # --- figures and invariants

    def measure(self) -> Figures:
        f = self.figures
        history = self.history()
        f.history_alerts = len(history)
        covers: Counter[str] = Counter()
        unexpected = 0
        self.unexpected = []
        first_delivery: dict[str, datetime] = {}
        for row in history:
            payload = row["payload"]
            if row["Detection"] == "break-glass-use":
                items = [e for e in payload["event_ids"] if e in self.bg_events]
            elif row["Detection"] in self.episodes:
                # Declared by the scenario; each episode alerts once: a second alert for one
                # counts as a duplicate.
                items = [f"{row['Detection']}:{row['PrincipalKey']}"]
            else:
                items = [row["PrincipalKey"]] if row["PrincipalKey"] in self.users else []
            if not items:
                unexpected += 1
                self.unexpected.append(f"{row['Detection']}: {row['PrincipalKey']}")
            delivered_at = _first_delivery(row)
            for item in items:
                covers[item] += 1
                if delivered_at is not None:
                    first_delivery[item] = min(first_delivery.get(item, delivered_at), delivered_at)
        expected = {**self.bg_events, **self.users}
        f.expected = len(expected)
        f.stored = sum(1 for item in expected if covers[item])
        f.history_duplicates = sum(c - 1 for c in covers.values() if c > 1) + unexpected
        sink = self.sink_alert_ids()
        ids = {row["RowKey"] for row in history}
        f.delivered = sum(1 for i in ids if sink[i])
        f.teams_messages = sum(sink.values())
        f.teams_duplicates = sum(c - 1 for c in sink.values() if c > 1)
        f.accepted_not_shown = sum(
            1 for a in self.devstack.teams.attempts() if a.get("outcome") == "fault:lost"
        )
        f.lost = (f.expected - f.stored) + max(0, len(ids) - f.delivered - f.accepted_not_shown)
        f.late_rows = len(self.late)
        f.late_rows_missed = sum(1 for item in self.late if not covers[item])
        delays = [(first_delivery[i] - expected[i]).total_seconds() for i in expected if i in first_delivery]
        f.max_delay_s = max(delays) if delays else None
        readable = watermark.VISIBILITY_LAG
        ticks = [
            sum(1 for t in self.tick_times if expected[i] + readable <= t <= first_delivery[i])
            for i in expected
            if i in first_delivery
        ]
        f.max_ticks_to_alert = max(ticks) if ticks else None
        f.faults = max(f.faults, self._faults_seen())
        return f

    def _faults_seen(self) -> int:
        la = len(self.devstack.log_analytics.fault_log)
        attempts = self.devstack.teams.attempts()
        # A "slow" fault answers as the flow would, late: the sink marks it delayed, not fault:.
        teams = sum(1 for a in attempts if str(a.get("outcome", "")).startswith("fault:") or a.get("delayed"))
        return la + teams

    def assert_invariants(self, *, delivered: bool = True) -> Figures:
        f = self.measure()
        covered = self._covered()
        missing = sorted(i for i in {**self.bg_events, **self.users} if i not in covered)[:20]
        assert f.stored == f.expected, f"not in history: {missing}; tick errors: {self.errors}"
        assert f.history_duplicates == 0, (
            f"duplicate or unexpected alerts in history (unexpected: {self.unexpected}): {f}"
        )
        alerted = {row["Detection"] for row in self.history()}
        assert self.episodes <= alerted, (
            f"no alert for the expected episode: {sorted(self.episodes - alerted)}"
        )
        assert f.max_ticks_to_alert is None or f.max_ticks_to_alert <= f.bound_ticks, (
            f"an alert took {f.max_ticks_to_alert} ticks to reach Teams, bound {f.bound_ticks}"
        )
        if delivered:
            assert f.delivered == f.history_alerts, f"alerts not in Teams: {f}; errors {self.errors}"
            assert not self.outbox(), "the outbox still holds undelivered alerts"
        return f

    def _covered(self) -> set[str]:
        covered = set()
        for row in self.history():
            covered.update(row["payload"]["event_ids"])
            covered.add(row["PrincipalKey"])
        return covered


def _first_delivery(row: dict[str, Any]) -> datetime | None:
    for entry in json.loads(row.get("DeliveryLog") or "[]"):
        if entry["result"] == "delivered":
            return datetime.fromisoformat(entry["at"])
    return None


def start_time() -> datetime:
    """A simulated 'now' on a whole minute, a little in the past (the devstack's clock is real)."""
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)


__all__ = ["ADELE", "BG2_UPN", "FULL", "SVC", "TICK", "Figures", "World", "full_only", "iso", "start_time"]
