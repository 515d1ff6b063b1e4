"""Waivers end to end on the devstack: Azurite, the query API, the Teams sink, production wiring.

The tick's `now` is driven forward (days) to reach a waiver's reminder window and its end; log
rows are ingested at matching times, so the real watermark windows pick them up.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import Devstack
from monitors.bootstrap import services_from_environment, tick
from monitors.cli import main
from monitors.detections.user_arm_write import ADELE, arm_row
from monitors.history_store import HistoryQuery, HistoryStore
from monitors.state import AlertState
from monitors.tick import Services
from monitors.waivers import POINT_READS, Waiver, WaiverBook, WaiverRefused
from tests.unit.test_web import make_alert

UPN = "AdeleV@contoso.com"
USER_CLAIMS = {
    "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    "http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": UPN,
    "http://schemas.microsoft.com/identity/claims/objectidentifier": ADELE,
}
REASON = "Nightly Terraform job in a user object; moves to a managed identity in Q1"


@pytest.fixture
def services(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    # This workspace holds the Activity Log only, a day of it in some tests: the Entra tables are
    # not exported on purpose here, or source-silent would rightly say they are missing.
    monkeypatch.setenv("SOURCE_SILENCE_HOURS", "SigninLogs=0,AADNonInteractiveUserSignInLogs=0,AuditLogs=0")
    return services_from_environment()


def arm_write(devstack: Devstack, event_id: str, ingested: datetime) -> None:
    """Adele (a user account) deletes a web app; the row lands at `ingested`."""
    row = arm_row(event_id, UPN, USER_CLAIMS)
    devstack.log_analytics.ingest(
        "AzureActivity",
        [{**row, "TimeGenerated": (ingested - timedelta(minutes=3)).isoformat(),
          "_IngestionTime": ingested.isoformat()}],
    )  # fmt: skip


def add_waiver(services: Services, now: datetime, days: float, principal: str = ADELE) -> Waiver:
    return WaiverBook(services.store).add(
        detection="user-arm-write",
        principal=principal,
        owner="Platform team",
        reason=REASON,
        approver="CISO office",
        created_by="Sam",
        expires_at=now + timedelta(days=days),
        now=now,
    )


def history(services: Services, **query: Any) -> list[dict[str, Any]]:
    return HistoryStore(services.store).query(HistoryQuery(limit=200, **query)).rows


def in_baseline(services: Services) -> bool:
    return bool(AlertState(services.store).known_principals("user-arm-write", [ADELE]))


# --------------------------------------------------------------------------- waived findings


def test_a_waived_finding_is_in_history_but_not_in_teams(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    waiver = add_waiver(services, now, days=30)
    arm_write(devstack, "w-1", now - timedelta(minutes=10))

    report = tick(services, now)
    assert report.alerts_stored == 1
    assert report.waived == 1
    assert report.delivered == 0
    assert devstack.teams.attempts() == []  # not even tried

    (row,) = history(services)
    assert row["Detection"] == "user-arm-write"
    assert row["Status"] == "waived"
    assert row["Delivery"] == "not routed"
    # Nothing will deliver it, so nothing of it stays in the outbox every tick reads.
    assert list(services.store.query("outbox", "PartitionKey eq @pk", {"pk": "outbox"})) == []
    assert row["Waiver"] == waiver.summary()
    assert row["Waiver"].startswith("waiver by CISO office until ")
    assert REASON in row["Waiver"]
    # The on-call views filtered by status and by principal (UPN or object id) show it too.
    assert [r["Waiver"] for r in history(services, status="waived")] == [waiver.summary()]
    assert [r["RowKey"] for r in history(services, principal=UPN)] == [row["RowKey"]]

    # Not in the baseline: while the waiver lasts, each new finding is stored as waived again.
    assert not in_baseline(services)
    arm_write(devstack, "w-2", now + timedelta(minutes=3))
    second = tick(services, now + timedelta(minutes=10))
    assert (second.alerts_stored, second.waived) == (1, 1)
    assert [r["Status"] for r in history(services)] == ["waived", "waived"]
    assert devstack.teams.attempts() == []


def test_a_waiver_by_upn_covers_the_finding_of_that_object_id(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    add_waiver(services, now, days=30, principal="adelev@CONTOSO.com")
    arm_write(devstack, "u-1", now - timedelta(minutes=10))
    report = tick(services, now)
    assert report.waived == 1
    assert devstack.teams.messages() == []


def test_after_expiry_the_next_finding_alerts_once(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    add_waiver(services, now, days=1)
    arm_write(devstack, "x-1", now - timedelta(minutes=10))
    assert tick(services, now).waived == 1

    # A day later the waiver has ended: Adele's next ARM write alerts, and reaches Teams.
    later = now + timedelta(days=1, minutes=10)
    arm_write(devstack, "x-2", later - timedelta(minutes=5))
    report = tick(services, later)
    assert (report.alerts_stored, report.waived, report.delivered) == (1, 0, 1)
    # A one-day waiver is inside the 7-day reminder window from the start: the first tick reminded.
    reminder, alert = devstack.teams.messages()
    assert reminder["card"]["body"][0]["text"] == "WAIVER ENDING · user-arm-write"
    assert "New user account doing ARM writes" in json.dumps(alert["card"])
    assert [r["Status"] for r in history(services)] == ["new", "waived"]  # newest first
    assert history(services)[0]["Waiver"] == ""

    # That alert put her into the baseline: once per principal, as without waivers.
    assert in_baseline(services)
    arm_write(devstack, "x-3", later + timedelta(minutes=5))
    assert tick(services, later + timedelta(minutes=10)).alerts_stored == 0
    assert len(devstack.teams.messages()) == 2


def test_after_revocation_the_next_finding_alerts(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    book = WaiverBook(services.store)
    add_waiver(services, now - timedelta(hours=1), days=30)
    arm_write(devstack, "r-1", now - timedelta(minutes=10))
    assert tick(services, now).waived == 1

    revoked = book.revoke(
        "user-arm-write", ADELE.upper(), "Dana", "migrated early", now=now + timedelta(minutes=1)
    )
    assert revoked.revoked_by == "Dana"
    assert book.list(now + timedelta(minutes=2)) == []
    assert [w.status(now) for w in book.list(now + timedelta(minutes=2), include_inactive=True)] == [
        "revoked"
    ]

    arm_write(devstack, "r-2", now + timedelta(minutes=3))
    report = tick(services, now + timedelta(minutes=10))
    assert (report.alerts_stored, report.waived, report.delivered) == (1, 0, 1)

    audit = book.audit()
    assert [(a["action"], a["by"]) for a in audit] == [("revoke", "Dana"), ("add", "Sam")]
    assert audit[0]["details"]["reason"] == "migrated early"
    assert audit[1]["details"]["approver"] == "CISO office"
    assert audit[1]["principal"] == ADELE


class Crash(BaseException):
    """Stands in for the process dying: nothing after it runs."""


class CrashingStore:
    """The real store, dying on the first history write: a waived alert sits uncommitted."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def upsert_many(self, table: str, entities: Any) -> int:
        if table == "alerts":
            raise Crash
        return self.real.upsert_many(table, entities)


def test_a_waived_alert_recovered_after_a_crash_keeps_its_waiver(
    devstack: Devstack, services: Services
) -> None:
    now = datetime.now(UTC)
    waiver = add_waiver(services, now, days=30)
    arm_write(devstack, "c-1", now - timedelta(minutes=10))
    with pytest.raises(Crash):
        tick(replace(services, store=CrashingStore(services.store)), now)
    assert history(services) == []

    # The watermark did not move: the rows are read again, and the waived alert is not stored twice
    # (it is remembered by its events, since it stays out of the baseline).
    report = tick(services, now + timedelta(minutes=1))
    assert report.recovered == 1
    assert report.alerts_stored == 0
    (row,) = history(services)
    assert (row["Status"], row["Waiver"]) == ("waived", waiver.summary())
    assert not in_baseline(services)
    assert devstack.teams.attempts() == []


# --------------------------------------------------------------------------- reminders


def test_the_reminder_goes_out_once_within_the_window_not_before(
    devstack: Devstack, services: Services
) -> None:
    now = datetime.now(UTC)
    book = WaiverBook(services.store)
    waiver = add_waiver(services, now, days=10)  # WAIVER_REMINDER_DAYS defaults to 7
    window_opens = waiver.expires_at - timedelta(days=7)

    assert tick(services, now).reminders_sent == 0
    assert tick(services, window_opens - timedelta(minutes=1)).reminders_sent == 0
    assert devstack.teams.attempts() == []

    report = tick(services, window_opens + timedelta(minutes=1))
    assert report.reminders_sent == 1
    (message,) = devstack.teams.messages()
    assert devstack.teams.rejected() == []
    card = message["card"]
    assert card["body"][0]["text"] == "WAIVER ENDING · user-arm-write"
    assert ADELE in card["body"][1]["text"]
    reminded = book.get("user-arm-write", ADELE)
    assert reminded is not None
    assert reminded.reminded_at == window_opens + timedelta(minutes=1)

    for later in (timedelta(minutes=10), timedelta(days=6, hours=23)):
        assert tick(services, window_opens + later).reminders_sent == 0
    assert len(devstack.teams.messages()) == 1

    (latest, *_) = book.audit()
    assert (latest["action"], latest["by"], latest["principal"]) == ("remind", "monitor", ADELE)
    assert latest["details"]["webhooks"] == "teams_1"


def test_a_failed_reminder_is_retried_and_reaches_each_channel_once(
    devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three channels: on-call (low), the team's (medium), paging (critical only). user-arm-write
    # alerts reach the first two, so its waiver reminders do too; paging never hears of them.
    for suffix, name, severity in (("_2", "team", "medium"), ("_3", "paging", "critical")):
        monkeypatch.setenv(f"TEAMS_WEBHOOK_URL{suffix}", devstack.teams.webhook_url(name))
        monkeypatch.setenv(f"TEAMS_WEBHOOK_MIN_SEVERITY{suffix}", severity)
    services = services_from_environment()
    book = WaiverBook(services.store)
    now = datetime.now(UTC)
    add_waiver(services, now - timedelta(days=1), days=3)  # ends in 2 days: inside the window already

    devstack.teams.set_fault("500", name="team")
    first = tick(services, now)
    assert (first.reminders_sent, first.reminder_failures) == (0, 1)
    assert len(devstack.teams.messages("oncall")) == 1
    assert devstack.teams.messages("team") == []
    pending = book.get("user-arm-write", ADELE)
    assert pending is not None
    assert pending.reminded_at is None
    assert pending.reminder_sent_to == ("teams_1",)

    devstack.teams.clear_faults()
    second = tick(services, now + timedelta(minutes=5))
    assert (second.reminders_sent, second.reminder_failures) == (1, 0)
    assert len(devstack.teams.messages("oncall")) == 1  # not posted twice
    assert len(devstack.teams.messages("team")) == 1
    assert devstack.teams.messages("paging") == []

    assert tick(services, now + timedelta(minutes=10)).reminders_sent == 0
    assert len(devstack.teams.messages()) == 2
    done = book.get("user-arm-write", ADELE)
    assert done is not None
    assert done.reminded_at == now + timedelta(minutes=5)


def test_a_reminder_retries_only_until_the_waiver_ends(devstack: Devstack, services: Services) -> None:
    now = datetime.now(UTC)
    waiver = add_waiver(services, now, days=1)
    devstack.teams.set_fault("500")
    assert tick(services, now).reminder_failures == 1
    devstack.teams.clear_faults()
    report = tick(services, waiver.expires_at)
    assert (report.reminders_sent, report.reminder_failures) == (0, 0)
    assert devstack.teams.messages() == []


class FilterLog:
    """The real store, keeping the filter of every table query."""

    def __init__(self, real: Any) -> None:
        self.real, self.filters = real, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def query(self, table: str, query_filter: str, parameters: Any, **options: Any) -> Any:
        self.filters.append((table, query_filter))
        return self.real.query(table, query_filter, parameters, **options)


def test_reminders_come_from_a_range_read_and_follow_renewals_and_revocations(services: Services) -> None:
    now = datetime.now(UTC)
    store = FilterLog(services.store)
    book = WaiverBook(store)
    soon = add_waiver(services, now, days=3)
    later = add_waiver(services, now, days=30, principal="ops@contoso.com")
    assert book.due_reminders(now, 7) == [soon]
    assert all(f.startswith("PartitionKey eq @pk and RowKey") for _, f in store.filters), store.filters

    renewed = book.add(detection="user-arm-write", principal=ADELE, owner="Platform team", reason=REASON,
                       approver="CISO office", created_by="Sam", expires_at=now + timedelta(days=5), now=now,
                       replace_active=True)  # fmt: skip
    assert book.due_reminders(now, 7) == [renewed]  # once, at its new expiry; the old entry is stale
    assert book.due_reminders(now, 40) == [renewed, later]
    book.revoke("user-arm-write", ADELE, by="Dana", reason="migrated", now=now)
    assert book.due_reminders(now, 7) == []
    assert book.due_reminders(later.expires_at, 7) == []  # ending exactly now: nothing left to remind of


def test_no_reminders_when_turned_off(
    devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAIVER_REMINDER_DAYS", "0")
    services = services_from_environment()
    now = datetime.now(UTC)
    add_waiver(services, now, days=1)
    assert tick(services, now + timedelta(hours=12)).reminders_sent == 0
    assert devstack.teams.attempts() == []


# --------------------------------------------------------------------------- the book against Azurite


def test_book_refuses_break_glass_a_second_active_waiver_and_an_unknown_revoke(services: Services) -> None:
    now = datetime.now(UTC)
    book = WaiverBook(services.store)
    with pytest.raises(WaiverRefused, match=r"^break-glass-use can never be waived"):
        book.add(detection="break-glass-use", principal=ADELE, owner="o", reason=REASON, approver="a",
                 created_by="b", expires_at=now + timedelta(days=1), now=now)  # fmt: skip
    first = add_waiver(services, now, days=30)
    with pytest.raises(WaiverRefused, match="already has an active user-arm-write waiver"):
        add_waiver(services, now, days=60)
    with pytest.raises(WaiverRefused, match=r"no active user-arm-write waiver for someone@contoso\.com"):
        book.revoke("user-arm-write", "someone@contoso.com", "Dana", "gone", now=now)
    assert book.list(now) == [first]
    assert [a["action"] for a in book.audit()] == ["add"]  # refusals change nothing

    # An ended waiver is replaced by a new one without --replace; the audit keeps both.
    book.revoke("user-arm-write", ADELE, "Dana", "migrated", now=now + timedelta(seconds=1))
    renewed = add_waiver(services, now + timedelta(seconds=2), days=60)
    assert book.list(now + timedelta(seconds=3)) == [renewed]
    assert [a["action"] for a in book.audit()] == ["add", "revoke", "add"]


def test_list_is_soonest_to_end_first_and_audit_newest_first(services: Services) -> None:
    now = datetime.now(UTC)
    book = WaiverBook(services.store)
    late = add_waiver(services, now, days=90, principal="svc-a@contoso.com")
    soon = add_waiver(services, now + timedelta(seconds=1), days=10, principal="svc-b@contoso.com")
    assert book.list(now + timedelta(seconds=2)) == [soon, late]
    assert [a["principal"] for a in book.audit()] == ["svc-b@contoso.com", "svc-a@contoso.com"]
    assert book.list(now + timedelta(days=11)) == [late]
    assert book.list(now + timedelta(days=11), include_inactive=True) == [soon, late]


# --------------------------------------------------------------------------- CLI


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["waivers", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ADD = ("add", "--detection", "user-arm-write", "--principal", UPN, "--owner", "Platform team",
       "--approver", "CISO office", "--reason", REASON, "--by", "Sam")  # fmt: skip


def test_cli_add_list_revoke_audit_round_trip(
    devstack: Devstack, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, *ADD, "--days", "30")
    assert (code, err) == (0, "")
    assert "adelev@contoso.com" in out
    assert "active" in out

    code, out, _ = cli(capsys, "list", "--format", "json")
    (listed,) = json.loads(out)
    assert listed["principal"] == "adelev@contoso.com"
    assert listed["status"] == "active"
    assert (listed["owner"], listed["approver"], listed["created_by"]) == (
        "Platform team",
        "CISO office",
        "Sam",
    )

    # The tick honours it at once: Adele's ARM write is stored as waived, Teams hears nothing.
    now = datetime.now(UTC)
    arm_write(devstack, "cli-1", now - timedelta(minutes=10))
    assert tick(services, now).waived == 1
    assert devstack.teams.attempts() == []

    code, _, err = cli(capsys, *ADD, "--days", "60")
    assert code == 2
    assert "already has an active user-arm-write waiver" in err
    code, _, err = cli(capsys, *ADD, "--days", "60", "--replace")
    assert (code, err) == (0, "")

    code, out, err = cli(capsys, "revoke", "--detection", "user-arm-write", "--principal", UPN,
                         "--by", "Dana", "--reason", "moved to a managed identity")  # fmt: skip
    assert (code, err) == (0, "")
    assert "revoked" in out
    assert cli(capsys, "list")[1] == "No waivers.\n"
    code, out, _ = cli(capsys, "list", "--all", "--format", "json")
    (ended,) = json.loads(out)
    assert (ended["status"], ended["revoked_by"]) == ("revoked", "Dana")
    assert ended["revoke_reason"] == "moved to a managed identity"

    code, out, _ = cli(capsys, "audit", "--format", "json")
    assert [(a["action"], a["by"]) for a in json.loads(out)] == [
        ("revoke", "Dana"),
        ("replace", "Sam"),
        ("add", "Sam"),
    ]
    code, out, _ = cli(capsys, "audit")
    assert out.splitlines()[0].split() == ["AT", "BY", "ACTION", "DETECTION", "PRINCIPAL", "DETAILS"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--detection", "break-glass-use", "--days", "30"), "refused: break-glass-use can never be waived"),
        (("--days", "181"), "more than 180 days ahead (WAIVER_MAX_DAYS)"),
        (("--expires", "2020-01-01"), "is not in the future"),
        (("--expires", "next week"), "is not a date like 2026-12-31"),
        (("--approver", "sam", "--days", "30"), "'sam' cannot approve a waiver they record"),
        (("--principal", "adele", "--days", "30"), "neither an object id (GUID) nor a UPN"),
    ],
)
def test_cli_refusals_exit_2_with_the_reason_and_no_traceback(
    services: Services, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, out, err = cli(capsys, *ADD, *argv)  # later options override the defaults in ADD
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert out == ""
    assert WaiverBook(services.store).list(datetime.now(UTC), include_inactive=True) == []


def test_cli_max_days_follows_the_setting(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAIVER_MAX_DAYS", "30")
    code, _, err = cli(capsys, *ADD, "--days", "31")
    assert code == 2
    assert "more than 30 days ahead" in err
    assert cli(capsys, *ADD, "--days", "30")[0] == 0


def test_many_findings_read_the_detections_waivers_once_with_the_same_answers(services: Services) -> None:
    """Past POINT_READS findings of one detection in a tick, the book reads the detection's waiver
    partition once instead of two point reads per finding; the answers do not change."""
    now = datetime.now(UTC)
    users = [(f"00000000-0000-4000-8000-{n:012d}", f"user{n}@contoso.com") for n in range(30)]
    add_waiver(services, now, days=30, principal=users[3][0])  # by object id: within the point reads
    add_waiver(services, now, days=30, principal=users[25][1])  # by UPN: after them
    add_waiver(services, now - timedelta(days=40), days=30, principal=users[27][0])  # ended
    findings = [make_alert(n, user_id=oid, upn=upn).finding for n, (oid, upn) in enumerate(users)]
    book = WaiverBook(services.store)
    before = services.store.transactions
    covered = [n for n, finding in enumerate(findings) if book.covering(finding, now)]
    assert covered == [3, 25]
    assert services.store.transactions - before <= 2 * POINT_READS + 1
    # A book per finding makes every check a point read: the same two.
    assert [n for n, finding in enumerate(findings) if WaiverBook(services.store).covering(finding, now)] == [
        3,
        25,
    ]
