"""The tick end to end on the devstack: real query API, Azurite, Teams sink, production wiring."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import Devstack
from monitors.adapters.table_store import key
from monitors.adapters.teams import PostResult
from monitors.alerts import MAX_EVENTS_PER_ALERT
from monitors.bootstrap import services_from_environment, tick
from monitors.detections.break_glass_use import BG_ID, BG_UPN, PASSWORD, sign_in_row
from monitors.detections.break_glass_weak_method import drill_row
from monitors.detections.user_arm_write import ADELE, MANAGED_IDENTITY, arm_row
from monitors.history_store import HistoryQuery, HistoryStore
from monitors.lease import TTL as LEASE_TTL
from monitors.lease import Lease, LeaseLost
from monitors.state import AlertState, new_entry
from monitors.tick import Services
from tests.unit.test_web import make_alert

UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
USER_CLAIMS = {
    "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd",
    UPN_CLAIM: "AdeleV@contoso.com",
    OID_CLAIM: ADELE,
}


def drilled(devstack: Devstack, *accounts: tuple[str, str]) -> None:
    """The break-glass accounts passed their drill 12 days ago: these tests are not about the drill
    (break-glass-weak-method's own tests are), so no drill-overdue alert adds to their counts."""
    at = datetime.now(UTC) - timedelta(days=12)
    rows = [drill_row(f"drill-{n}", user_id, upn, at) for n, (user_id, upn) in enumerate(accounts)]
    devstack.log_analytics.ingest("SigninLogs", rows)


@pytest.fixture
def services(devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", f"{BG_ID},bg-admin2@contoso.onmicrosoft.com")
    drilled(devstack, (BG_ID, BG_UPN), ("", "bg-admin2@contoso.onmicrosoft.com"))
    return services_from_environment()


def ingest(
    devstack: Devstack, table: str, rows: list[dict[str, Any]], generated: datetime, ingested: datetime
) -> None:
    devstack.log_analytics.ingest(
        table,
        [{**r, "TimeGenerated": generated.isoformat(), "_IngestionTime": ingested.isoformat()} for r in rows],
    )


def first_arm_writes(devstack: Devstack, users: int, now: datetime) -> None:
    """Each of `users` user accounts makes its first ARM write (password only), ingested 8 min ago."""
    rows = []
    for n in range(users):
        upn, object_id = f"user{n}@contoso.com", f"00000000-0000-4000-8000-{n:012d}"
        rows.append(arm_row(f"w-{n}", upn, {**USER_CLAIMS, UPN_CLAIM: upn, OID_CLAIM: object_id}))
    ingest(devstack, "AzureActivity", rows, now - timedelta(minutes=9), now - timedelta(minutes=8))


def history(services: Services) -> list[dict[str, Any]]:
    return HistoryStore(services.store).query(HistoryQuery(limit=200)).rows


def test_late_user_write_and_break_glass_failure_alert_once(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    # Generated 30 hours ago, ingested 10 minutes ago: only an ingestion-time window sees it.
    ingest(devstack, "AzureActivity", [arm_row("late-1", "AdeleV@contoso.com", USER_CLAIMS)],
           now - timedelta(hours=30), now - timedelta(minutes=10))  # fmt: skip
    failure = {
        **sign_in_row("fail-1", BG_ID, BG_UPN, "50126", PASSWORD),
        "LocationDetails": {"city": "Lagos"},
    }
    ingest(devstack, "SigninLogs", [failure], now - timedelta(minutes=9), now - timedelta(minutes=8))

    first = tick(services, now)
    assert first.alerts_stored == 2
    assert first.delivered == 2
    detections = sorted(row["Detection"] for row in history(services))
    assert detections == ["break-glass-use", "user-arm-write"]
    cards = devstack.teams.messages()
    assert len(cards) == 2
    assert not devstack.teams.rejected()

    # Overlapping windows: a later tick re-reads nothing new and alerts nothing twice, even when
    # the same rows are ingested again (duplicates happen in real exports).
    ingest(devstack, "SigninLogs", [failure], now - timedelta(minutes=9), now - timedelta(minutes=1))
    second = tick(services, now + timedelta(minutes=5))
    assert second.alerts_stored == 0
    assert len(history(services)) == 2
    assert len(devstack.teams.messages()) == 2


def test_with_no_webhook_alerts_stay_in_the_history_and_leave_the_outbox(
    devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", "none")
    services = services_from_environment()
    assert services.settings.webhooks == ()
    now = datetime.now(UTC)
    ingest(devstack, "AzureActivity", [arm_row("nt-1", "AdeleV@contoso.com", USER_CLAIMS)],
           now - timedelta(minutes=9), now - timedelta(minutes=8))  # fmt: skip
    report = tick(services, now)
    assert (report.alerts_stored, report.delivered, report.delivery_failures) == (1, 0, 0)
    assert [(row["Detection"], row["Delivery"]) for row in history(services)] == [
        ("user-arm-write", "not routed")
    ]
    assert outbox(services) == []  # nothing left to deliver
    assert devstack.teams.messages() == []


def test_workload_identities_never_fire_user_arm_write(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    rows = [
        arm_row(
            "mi-1", "0b3c4d5e-1111-4222-8333-444455556666", {"idtyp": "app", "xms_mirid": MANAGED_IDENTITY}
        ),
        arm_row(
            "sp-1", "deploy@contoso.com", {"idtyp": "app", "appid": "11111111-2222-4333-8444-555555555555"}
        ),
    ]
    ingest(devstack, "AzureActivity", rows, now - timedelta(minutes=20), now - timedelta(minutes=10))
    report = tick(services, now)
    assert report.rows["user-arm-write"] == 0
    assert report.alerts_stored == 0


class FailingPoster:
    """Wraps the real poster: every post fails the way `make` says, until told to recover."""

    def __init__(self, real: Any, make: Callable[[], PostResult]) -> None:
        self.real, self.make, self.failing, self.calls = real, make, True, 0

    def post(self, webhook: Any, payload: dict[str, Any]) -> PostResult:
        self.calls += 1
        return self.make() if self.failing else self.real.post(webhook, payload)


@pytest.mark.parametrize("fault", ["429", "500", "down"])
def test_teams_faults_delay_but_never_lose_an_alert(
    devstack: Devstack, services: Services, fault: str
) -> None:
    now = datetime.now(UTC)
    ingest(devstack, "SigninLogs", [sign_in_row(f"s-{fault}", BG_ID, BG_UPN)], now - timedelta(minutes=9),
           now - timedelta(minutes=8))  # fmt: skip
    devstack.teams.set_fault(mode=fault, retry_after=1, count=None)
    first = tick(services, now)
    assert first.alerts_stored == 1
    assert first.delivered == 0
    assert first.delivery_failures == 1
    (row,) = history(services)
    assert row["Delivery"] == "retrying"
    assert "sig=" not in row["LastDeliveryError"]

    # Still down at the next tick: detection goes on; the waiting card is tried once (a probe).
    still_down = tick(services, now + timedelta(seconds=5))
    assert (still_down.delivered, still_down.delivery_failures) == (0, 1)
    devstack.teams.clear_faults()
    later = tick(services, now + timedelta(seconds=10))  # back: delivered at once, backoff or not
    assert later.delivered == 1
    assert len(devstack.teams.messages()) == 1
    (row,) = history(services)
    assert row["Delivery"] == "delivered"
    assert row["DeliveryAttempts"] == 3


def test_once_teams_is_back_every_waiting_alert_goes_in_one_tick(
    devstack: Devstack, services: Services
) -> None:
    """An hour-long outage pushes each alert's backoff far out; recovery must not wait for it."""
    now = datetime.now(UTC)
    devstack.teams.set_fault(mode="503", count=None)
    for n in range(3):
        at = now + n * timedelta(minutes=5)
        row = sign_in_row(f"outage-{n}", BG_ID, BG_UPN)
        ingest(devstack, "SigninLogs", [row], at - timedelta(minutes=4), at - timedelta(minutes=3))
    for n in range(12):  # an hour of ticks, every one refused
        tick(services, now + n * timedelta(minutes=5))
    waiting = HistoryStore(services.store).query(HistoryQuery(limit=200)).rows
    assert len(waiting) == 3
    assert {row["Delivery"] for row in waiting} == {"retrying"}
    devstack.teams.clear_faults()
    back = tick(services, now + timedelta(minutes=60))
    assert back.delivered == 3
    assert len(devstack.teams.messages()) == 3


def test_alerts_behind_a_refusing_webhook_are_recorded_once_then_wait_untouched(
    devstack: Devstack, services: Services
) -> None:
    """Teams refuses a tick's first card: the others are not tried. Each alert's history says so
    once (retrying, and why); after that a waiting alert is not written to until it is tried (a
    delivery record is six requests; thousands waiting would pay them every tick of an outage)."""
    now = datetime.now(UTC)
    first_arm_writes(devstack, 5, now)
    devstack.teams.set_fault(mode="500", count=None)
    first = tick(services, now)
    assert (first.alerts_stored, first.delivery_failures, first.deferred) == (5, 5, 0)
    assert len(devstack.teams.attempts()) == 1
    rows_after_first = {row["RowKey"]: row for row in history(services)}
    assert {row["Delivery"] for row in rows_after_first.values()} == {"retrying"}
    assert sum("deferred" in row["LastDeliveryError"] for row in rows_after_first.values()) == 4

    second = tick(services, now + timedelta(minutes=1))  # every backoff (30 s) has passed
    assert (second.delivery_failures, second.deferred) == (1, 4)
    assert len(devstack.teams.attempts()) == 2
    changed = [row["RowKey"] for row in history(services) if row["DeliveryAttempts"] != 1]
    assert len(changed) == 1  # only the one tried again has a new record

    devstack.teams.clear_faults()
    back = tick(services, now + timedelta(minutes=2))
    assert back.delivered == 5
    assert {row["Delivery"] for row in history(services)} == {"delivered"}


class Crash(BaseException):
    """Stands in for the process dying (SIGKILL): nothing after it runs, no handler catches it."""


def test_crash_between_storing_and_delivering_delivers_on_the_next_tick(
    devstack: Devstack, services: Services
) -> None:
    now = datetime.now(UTC)
    ingest(devstack, "SigninLogs", [sign_in_row("crash-1", BG_ID, BG_UPN)], now - timedelta(minutes=9),
           now - timedelta(minutes=8))  # fmt: skip

    def crash() -> PostResult:
        raise Crash

    with pytest.raises(Crash):
        tick(replace(services, teams=FailingPoster(services.teams, crash)), now)
    assert len(history(services)) == 1
    assert devstack.teams.messages() == []

    report = tick(services, now + timedelta(minutes=1))
    assert report.alerts_stored == 0  # the events are remembered: no second alert
    assert report.delivered == 1
    assert len(devstack.teams.messages()) == 1


class CrashingStore:
    """Wraps the real store and dies on the first history write: an alert sits uncommitted."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def upsert_many(self, table: str, entities: Any) -> int:
        if table == "alerts":
            raise Crash
        return self.real.upsert_many(table, entities)


def test_crash_before_commit_is_recovered_without_a_duplicate(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    ingest(devstack, "SigninLogs", [sign_in_row("c-1", BG_ID, BG_UPN)], now - timedelta(minutes=9),
           now - timedelta(minutes=8))  # fmt: skip
    with pytest.raises(Crash):
        tick(replace(services, store=CrashingStore(services.store)), now)
    assert history(services) == []

    report = tick(services, now + timedelta(minutes=1))
    assert report.recovered == 1
    assert report.alerts_stored == 0
    assert len(history(services)) == 1
    assert len(devstack.teams.messages()) == 1


def outbox(services: Services) -> list[dict[str, Any]]:
    return list(services.store.query("outbox", "PartitionKey eq @pk", {"pk": "outbox"}))


def test_an_alert_no_webhook_takes_leaves_the_outbox_once_stored(
    devstack: Devstack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below every webhook's minimum severity (or waived: test_waivers.py), nothing will deliver
    it: once its history entry and dedupe markers are stored, its outbox entry has done its job.
    Kept, it would be read again by every later tick (delivery reads the outbox whole)."""
    monkeypatch.setenv("TEAMS_WEBHOOK_MIN_SEVERITY", "critical")
    services = services_from_environment()
    now = datetime.now(UTC)
    ingest(devstack, "AzureActivity", [arm_row("nr-1", "AdeleV@contoso.com", USER_CLAIMS)],
           now - timedelta(minutes=9), now - timedelta(minutes=8))  # fmt: skip
    report = tick(services, now)
    assert report.alerts_stored == 1
    assert [row["Delivery"] for row in history(services)] == ["not routed"]
    assert outbox(services) == []
    assert devstack.teams.attempts() == []


def test_an_unroutable_alert_a_crash_left_uncommitted_is_recovered_then_leaves_the_outbox(
    devstack: Devstack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_WEBHOOK_MIN_SEVERITY", "critical")
    services = services_from_environment()
    now = datetime.now(UTC)
    ingest(devstack, "AzureActivity", [arm_row("nr-2", "AdeleV@contoso.com", USER_CLAIMS)],
           now - timedelta(minutes=9), now - timedelta(minutes=8))  # fmt: skip
    with pytest.raises(Crash):
        tick(replace(services, store=CrashingStore(services.store)), now)
    assert [entry["Committed"] for entry in outbox(services)] == [False]

    report = tick(services, now + timedelta(minutes=1))
    assert (report.recovered, report.alerts_stored) == (1, 0)
    assert [row["Delivery"] for row in history(services)] == ["not routed"]
    assert outbox(services) == []


def test_recovery_reads_only_what_a_crash_left_uncommitted(services: Services) -> None:
    """The tick's first step asks the service for uncommitted entries only: a delivery backlog of
    thousands (Teams down for an hour) is not read with its payloads to find none."""
    state = AlertState(services.store)
    now = datetime.now(UTC)
    entries = [
        new_entry(
            make_alert(n, upn=f"user{n}@contoso.com", user_id=f"00000000-0000-4000-8000-{n:012d}"),
            ["oncall"],
            now,
        )
        for n in range(3)
    ]
    state.enqueue(entries)
    state.commit(entries[:2], "principal", (now - timedelta(days=2), now))
    assert [e.alert.alert_id for e in state.outbox(uncommitted_only=True)] == [entries[2].alert.alert_id]
    assert sorted(e.committed for e in state.outbox()) == [False, True, True]


def test_each_webhook_receives_only_alerts_at_or_above_its_minimum_severity(
    devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", BG_ID)
    drilled(devstack, (BG_ID, BG_UPN))
    monkeypatch.setenv("TEAMS_WEBHOOK_URL_2", devstack.teams.webhook_url("critical-only"))
    monkeypatch.setenv("TEAMS_WEBHOOK_MIN_SEVERITY_2", "critical")
    services = services_from_environment()
    now = datetime.now(UTC)
    with_mfa = {**USER_CLAIMS, "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa"}
    ingest(devstack, "AzureActivity", [arm_row("m-1", "AdeleV@contoso.com", with_mfa)],
           now - timedelta(minutes=9), now - timedelta(minutes=8))  # fmt: skip
    ingest(devstack, "SigninLogs", [sign_in_row("bg-1", BG_ID, BG_UPN)], now - timedelta(minutes=9),
           now - timedelta(minutes=8))  # fmt: skip
    tick(services, now)

    def titles(name: str) -> list[str]:
        return sorted(m["card"]["body"][0]["text"] for m in devstack.teams.messages(name))

    assert titles("oncall") == ["CRITICAL · Break-glass account used",
                                "MEDIUM · User account performs ARM writes for the first time"]  # fmt: skip
    assert titles("critical-only") == ["CRITICAL · Break-glass account used"]


class CountingReader:
    def __init__(self, real: Any) -> None:
        self.real, self.queries = real, 0

    def query(self, kql: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        self.queries += 1
        return self.real.query(kql, start, end)


def test_a_tick_stands_back_while_another_holds_the_lease(devstack: Devstack, services: Services) -> None:
    """Two hosts firing the same schedule: the second tick reads nothing and moves no watermark."""
    now = datetime.now(UTC)
    failure = sign_in_row("lease-1", BG_ID, BG_UPN, "50126", PASSWORD)
    ingest(devstack, "SigninLogs", [failure], now - timedelta(minutes=9), now - timedelta(minutes=8))
    workspace = services.settings.workspace_id
    other = Lease.acquire(services.store, workspace, now)
    with pytest.raises(LeaseLost, match="held by tick"):
        Lease.acquire(services.store, workspace, now + timedelta(seconds=30))

    reader = CountingReader(services.logs)
    busy = tick(replace(services, logs=reader), now)
    assert "held by tick" in (busy.stood_back or "")
    assert (busy.alerts_stored, reader.queries) == (0, 0)

    other.release()
    done = tick(replace(services, logs=reader), now)
    assert done.stood_back is None
    assert done.alerts_stored == 1
    assert reader.queries > 0

    # A crashed tick never releases: its lease expires, and the next scheduled tick runs.
    Lease.acquire(services.store, workspace, now + timedelta(minutes=1))
    later = tick(services, now + timedelta(minutes=1) + LEASE_TTL + timedelta(seconds=1))
    assert later.stood_back is None


def test_a_lease_taken_over_is_not_released_by_its_old_holder(services: Services) -> None:
    now = datetime.now(UTC) + timedelta(days=1)  # clear of leases other tests left
    workspace = services.settings.workspace_id
    first = Lease.acquire(services.store, workspace, now)
    second = Lease.acquire(services.store, workspace, now + LEASE_TTL + timedelta(seconds=1))
    first.release()  # its ETag is stale: nothing happens, and nothing is raised
    with pytest.raises(LeaseLost):
        Lease.acquire(services.store, workspace, now + LEASE_TTL + timedelta(seconds=2))
    second.release()
    Lease.acquire(services.store, workspace, now + LEASE_TTL + timedelta(seconds=3)).release()


def test_ropc_sign_in_alerts_once_per_user_and_app(devstack: Devstack, services: Services) -> None:
    """ropc-sign-in's baseline is "user|app" (Finding.subject): the same account's password grant
    from the same tool alerts once; from another tool it is new."""
    from monitors.detections.ropc_sign_in import AZURE_CLI, POWERSHELL, SVC_ID
    from monitors.detections.ropc_sign_in import sign_in_row as ropc_row

    now = datetime.now(UTC)
    ingest(
        devstack, "SigninLogs", [ropc_row("ropc-1")], now - timedelta(minutes=9), now - timedelta(minutes=8)
    )
    tick(services, now)

    def ropc_alerts() -> list[dict[str, Any]]:
        return [row for row in history(services) if row["Detection"] == "ropc-sign-in"]

    # The account also scores as user-service-account (password grant, no interactive use): that
    # detection's own baseline, once per account; this test is about ropc-sign-in's.
    assert len(ropc_alerts()) == 1
    assert {row["Detection"] for row in history(services)} <= {"ropc-sign-in", "user-service-account"}

    later = now + timedelta(minutes=5)
    cli = {"AppId": AZURE_CLI, "AppDisplayName": "Microsoft Azure CLI"}
    ingest(devstack, "SigninLogs", [ropc_row("ropc-2"), ropc_row("ropc-3", **cli)],
           later - timedelta(minutes=4), later - timedelta(minutes=3))  # fmt: skip
    second = tick(services, later)
    assert second.alerts_stored == 1  # the CLI is new; PowerShell is in the baseline
    ropc = ropc_alerts()
    assert len(ropc) == 2
    assert {row["PrincipalKey"] for row in ropc} == {SVC_ID}  # history stays keyed by the user
    baseline = {
        e["RowKey"] for e in services.store.query("baseline", "PartitionKey eq @pk", {"pk": "ropc-sign-in"})
    }
    assert baseline == {key(f"{SVC_ID}|{POWERSHELL}"), key(f"{SVC_ID}|{AZURE_CLI}")}


class CountingStore:
    """The real store, counting the requests each table's writes cost."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def insert_many(self, table: str, entities: Any) -> int:
        used = self.real.insert_many(table, entities)
        self.writes[table] += used
        return used

    def upsert_many(self, table: str, entities: Any) -> int:
        used = self.real.upsert_many(table, entities)
        self.writes[table] += used
        return used

    def claim_many(self, table: str, entities: Any) -> list[Any]:
        before = self.real.transactions
        held = self.real.claim_many(table, entities)
        self.writes[table] += self.real.transactions - before
        return held

    def delete_many(self, table: str, keys: Any) -> int:
        used = self.real.delete_many(table, keys)
        self.writes[table] += used
        return used

    def insert(self, table: str, entity: Any) -> bool:
        self.writes[table] += 1
        return self.real.insert(table, entity)

    def replace(self, table: str, entity: Any, etag: Any) -> None:
        self.writes[table] += 1
        self.real.replace(table, entity, etag)

    def merge(self, table: str, entity: Any) -> None:
        self.writes[table] += 1
        self.real.merge(table, entity)

    def delete(self, table: str, partition_key: str, row_key: str) -> None:
        self.writes[table] += 1
        self.real.delete(table, partition_key, row_key)


def test_new_alerts_are_stored_in_batch_transactions(
    devstack: Devstack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 users write to ARM for the first time: one transaction per partition (up to 100 entities)
    for the outbox, the history's main, detection and principal partitions and the baseline; the
    80 principal index copies (object id and UPN of each) share one partition."""
    monkeypatch.setenv(
        "TEAMS_WEBHOOK_MIN_SEVERITY", "critical"
    )  # stored, not posted: only storing is counted
    services = services_from_environment()
    now = datetime.now(UTC)
    first_arm_writes(devstack, 40, now)
    store = CountingStore(services.store)
    report = tick(replace(services, store=store), now)
    assert report.alerts_stored == 40
    # Inserted, flagged committed, then (routed to no webhook) deleted: one transaction each.
    assert store.writes["outbox"] == 3
    assert store.writes["baseline"] == 1
    assert store.writes["alerts"] == 1 + 1 + 1  # main, detection index, principal index (80 copies)
    assert {row["RowKey"] for row in history(services)} == set(report.new_alerts)


def test_a_burst_split_into_parts_claims_its_principal_once(devstack: Devstack, services: Services) -> None:
    """A new user account's first window holds more writes than one alert carries: its parts share
    one baseline marker, claimed once, and every part is stored."""
    now = datetime.now(UTC)
    burst = "00000000-0000-4000-8000-00000000b0b0"
    claims = {**USER_CLAIMS, UPN_CLAIM: "burst@contoso.com", OID_CLAIM: burst}
    writes = [arm_row(f"burst-{n}", "burst@contoso.com", claims) for n in range(MAX_EVENTS_PER_ALERT + 50)]
    ingest(devstack, "AzureActivity", writes, now - timedelta(minutes=9), now - timedelta(minutes=8))
    report = tick(services, now)
    assert report.query_errors == []
    assert report.alerts_stored == 2
    parts = [r for r in history(services) if r["Detection"] == "user-arm-write"]
    assert sorted(r["EventCount"] for r in parts) == [50, MAX_EVENTS_PER_ALERT]
    assert {r["Principal"] for r in parts} == {"burst@contoso.com"}
