"""`python -m monitors replay`: the user-facing contract, run as a person would run it."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.stack import REAL_EXPORTS
from monitors.detections import DETECTIONS
from monitors.exports import SCHEMA
from tests.peak_memory import PEAK_MB

REPO = Path(__file__).resolve().parents[2]
ADELE_ID = "9b117c67-170e-4aed-9702-658b3fddc889"
ADELE_UPN = "adelev@m365x816222.onmicrosoft.com"


def replay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitors", "replay", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def replay_json(logdir: Path, *args: str) -> tuple[list[dict], str]:
    """Replay `logdir` for its JSON alerts (it must succeed) and what it said on stderr."""
    result = replay(str(logdir), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def edit_export(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8-sig")
    assert old in text
    path.write_text(text.replace(old, new, count), encoding="utf-8")


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    shutil.copy(REAL_EXPORTS / "azureActivity_adele.csv", tmp_path / "AzureActivity.csv")
    shutil.copy(REAL_EXPORTS / "sign-in_adelete.csv", tmp_path / "SigninLogs.csv")
    return tmp_path


def test_adele_is_a_user_doing_arm_writes_without_mfa(logdir: Path) -> None:
    (alert,), _ = replay_json(logdir)
    assert alert["detection"] == "user-arm-write"
    assert alert["user_id"] == ADELE_ID
    assert alert["user_principal_name"] == ADELE_UPN
    assert alert["severity"] == "high"  # portal writes with a password-only token
    assert alert["facts"]["MFA"].startswith("NO")
    assert alert["facts"]["Tools"] == "Azure portal"
    assert len(alert["event_ids"]) == 23  # every exported row, deletes and writes
    assert "0d0db332-83b8-4a90-9be5-47685712c9cf" in alert["event_ids"]


def test_break_glass_accounts_from_the_command_line_cover_every_table(logdir: Path) -> None:
    result = replay(str(logdir), "--format", "json", "--break-glass", ADELE_UPN.upper())
    assert result.returncode == 0, result.stderr
    alerts = {a["detection"]: a for a in json.loads(result.stdout)}
    assert set(alerts) == {"user-arm-write", "break-glass-use"}
    assert len(alerts["break-glass-use"]["event_ids"]) == 56 + 23  # every sign-in and ARM row


def test_break_glass_accounts_from_the_setting(logdir: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "BREAK_GLASS_ACCOUNTS": ADELE_ID}
    result = replay(str(logdir), "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert "break-glass-use" in {a["detection"] for a in json.loads(result.stdout)}


def test_the_setting_s_none_adds_no_account_to_those_on_the_command_line(logdir: Path) -> None:
    # BREAK_GLASS_ACCOUNTS=none is the app's explicit "no account": replay must not read it as one.
    env = {"PATH": "/usr/bin:/bin", "BREAK_GLASS_ACCOUNTS": "None"}
    alone = replay(str(logdir), "--format", "json", env=env)
    assert alone.returncode == 0, alone.stderr
    assert {a["detection"] for a in json.loads(alone.stdout)} == {"user-arm-write"}
    both = replay(str(logdir), "--format", "json", "--break-glass", ADELE_ID, env=env)
    assert both.returncode == 0, both.stderr
    assert "break-glass-use" in {a["detection"] for a in json.loads(both.stdout)}


def test_table_format_is_readable(logdir: Path) -> None:
    result = replay(str(logdir))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["DETECTION", "SEVERITY", "PRINCIPAL", "EVENTS", "FIRST", "LAST"]
    assert row.split()[:4] == ["user-arm-write", "high", ADELE_UPN, "23"]


def test_a_malformed_row_is_skipped_and_counted(logdir: Path) -> None:
    # Break the TimeGenerated of the first data row (the portal's datetime format). The value
    # is its EventSubmissionTimestamp too, which comes first; replay does not read that column.
    edit_export(logdir / "AzureActivity.csv", "4/28/2021, 2:44:55.615 PM", "not a time", 2)
    (alert,), stderr = replay_json(logdir)
    assert len(alert["event_ids"]) == 22
    assert "skipped 1 malformed rows" in stderr


def test_a_value_that_reads_as_a_json_array_is_just_a_value(logdir: Path) -> None:
    # The local engine once failed the whole user-arm-write query on a string column holding
    # JSON array text: one crafted row hid every alert of the export.
    edit_export(logdir / "AzureActivity.csv", ",37.142.150.162,", ',"[""10.6.6.6""]",')
    (alert,), _ = replay_json(logdir)
    assert len(alert["event_ids"]) == 23
    assert '["10.6.6.6"]' in alert["facts"]["IP addresses"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing", "no such folder"),
        (
            lambda d: (d / "AzureActivity.csv").write_bytes(b"\x00\x01garbage\xff" * 100) and d,
            "AzureActivity.csv",
        ),
        (lambda d: (d / "SigninLogs.csv").write_text("Foo,Bar\n1,2\n") and d, "SigninLogs.csv"),
    ],
    ids=["missing folder", "binary garbage", "no recognizable columns"],
)
def test_bad_input_exits_non_zero_naming_the_file(tmp_path: Path, make, expected: str) -> None:
    target = make(tmp_path)
    result = replay(str(target))
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_weak_method_and_source_silent_show_in_replay_under_their_own_ids(logdir: Path) -> None:
    """A password that worked for a break-glass account is break-glass-weak-method; the drill part
    and source-silent's silence part do not run on an export (README, Offline replay)."""
    edit_export(
        logdir / "SigninLogs.csv",
        '""authenticationMethod"": ""Previously satisfied""',
        '""authenticationMethod"": ""Password""',
    )
    found, _ = replay_json(logdir, "--break-glass", ADELE_ID)
    alerts = {a["detection"]: a for a in found}
    assert set(alerts) == {"user-arm-write", "break-glass-use", "break-glass-weak-method"}
    assert alerts["break-glass-weak-method"]["facts"]["Weak methods that worked"] == "Password"
    assert alerts["break-glass-weak-method"]["user_id"] == ADELE_ID


def test_reading_only_the_columns_the_queries_name_changes_no_finding(logdir: Path, tmp_path: Path) -> None:
    """Replay stores only the columns some detection's KQL names; every column gives the same findings."""
    from datetime import UTC, datetime, timedelta

    from devstack.local_reader import LocalLogsReader
    from devstack.loganalytics import LogAnalyticsServer
    from monitors import exports
    from monitors.cli import _columns_read
    from monitors.detections import DETECTIONS
    from monitors.detections.base import Context
    from monitors.pipeline import run_detection
    from monitors.settings import parse_break_glass
    from monitors.watermark import Window

    now = datetime.now(UTC)
    window = Window(start=now - timedelta(hours=1), end=now, earliest_time=datetime(1970, 1, 1, tzinfo=UTC))
    context = Context(break_glass=parse_break_glass(ADELE_UPN))

    def findings(pruned: bool) -> list[tuple[object, ...]]:
        engine = LogAnalyticsServer("replay", state_dir=tmp_path / str(pruned))
        for table, path in exports.discover(logdir).files.items():
            columns = _columns_read(table) if pruned else None
            rows = exports.read_export(path, table, exports.ReadReport(), columns=columns)
            engine.ingest(table, [{**row, "_IngestionTime": now - timedelta(minutes=10)} for row in rows])
        reader = LocalLogsReader(engine)
        try:
            found = [f for d in DETECTIONS for f in run_detection(d, reader, window, context, now).findings]
        finally:
            engine.stop()
        # make_set's order is the engine's (threads), so is which operation names a shortened list
        # shows: compare what the findings say, in any order, and that list by its name only
        return [
            (f.detection, f.severity, f.principal, f.headline, f.first_time, f.last_time,
             sorted(f.event_ids), sorted(f.events, key=repr),
             [(name, "" if name == "Operation names" else value) for name, value in f.facts])
            for f in found
        ]  # fmt: skip

    everything = findings(pruned=False)
    assert {"user-arm-write", "break-glass-use"} <= {f[0] for f in everything}
    assert findings(pruned=True) == everything


# --------------------------------------------------------------------------- guests and actions, real shapes
#
# Rows derived from the real export by editing copies of it, as above. What is changed comes
# from Microsoft's own records of the same things:
# - A B2B guest's ARM token in the Activity Log ("Monitoring Azure Monitor data reference",
#   MicrosoftDocs/azure-docs articles/azure-monitor/monitor-azure-monitor-reference.md, its
#   "Create Action Group" and "Delete Action Group" events of a Microsoft account guest): no upn
#   claim; http://schemas.microsoft.com/identity/claims/identityprovider names the home
#   ("live.com"); the e-mail in .../claims/emailaddress, as the Caller and as .../claims/name
#   behind "live.com#". A guest from another Entra tenant has that tenant's issuer as idp and its
#   e-mail as unique_name ("Understand user tokens in B2B collaboration", MicrosoftDocs/entra-docs
#   docs/external-id/user-token.md).
# - Actions: Microsoft.SecurityInsights/dataConnectorsCheckRequirements/action ("Check user
#   authorization and license", granted to the built-in Microsoft Sentinel Reader role:
#   MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/security.md) and
#   Microsoft.Storage/storageAccounts/listKeys/action are resource provider operations Microsoft
#   documents; the export's own operation names are upper-case, so are these.

IDP = "http://schemas.microsoft.com/identity/claims/identityprovider"
EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
PARTNER_TENANT = "c72298a0-1263-446b-88be-218b13844c82"
GUEST_MAIL = "adele.vance@fabrikam.example"
CHECK_REQUIREMENTS = "MICROSOFT.SECURITYINSIGHTS/DATACONNECTORSCHECKREQUIREMENTS/ACTION"
LIST_KEYS = "MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION"


def edit_rows(path: Path, edit: Callable[[int, dict[str, str]], None]) -> None:
    """Rewrite an exported CSV with `edit(index, row)` applied to each data row, columns kept."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        reader = csv.DictReader(source)
        columns, rows = list(reader.fieldnames or ()), list(reader)
    for index, row in enumerate(rows):
        edit(index, row)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        writer.writerows(rows)


def as_guest(idp: str, mail: str) -> Callable[[int, dict[str, str]], None]:
    """Adele's token as a B2B guest's: no upn, the e-mail claim, the home's identity provider,
    the name claim as the guest's unique_name; the claims in the order of Microsoft's sample."""
    name = f"live.com#{mail}" if idp == "live.com" else mail

    def edit(_: int, row: dict[str, str]) -> None:
        claims: dict[str, str] = {}
        for key, value in json.loads(row["Claims"]).items():
            if key == UPN:
                continue
            claims[key] = name if key == NAME else value
            if key == "appidacr":
                claims[EMAIL] = mail
            if key == "groups":
                claims[IDP] = idp
        row["Claims"] = json.dumps(claims, indent=2)
        row["Claims_d"] = json.dumps(claims, separators=(",", ":"))
        old_caller, row["Caller"] = row["Caller"], mail
        for column in ("Properties", "Properties_d"):
            row[column] = row[column].replace(old_caller, mail)

    return edit


ACTION_OR_MESSAGE = re.compile(r'("(?:action|message)": ?")[^"]*/(?:write|delete)"', re.IGNORECASE)


def as_action(row: dict[str, str], operation: str) -> None:
    """One exported row, its operation (the name, Authorization.action, Properties.message)
    replaced by an action on the same resource."""
    row["OperationNameValue"] = operation
    for column in ("Authorization", "Authorization_d", "Properties", "Properties_d"):
        row[column] = ACTION_OR_MESSAGE.sub(lambda m: f'{m.group(1)}{operation}"', row[column])


@pytest.mark.parametrize(
    ("idp", "home"),
    [
        (f"https://sts.windows.net/{PARTNER_TENANT}/", PARTNER_TENANT),
        ("live.com", "a personal Microsoft account (live.com)"),
    ],
    ids=["partner tenant", "Microsoft account"],
)
def test_a_guests_real_shaped_arm_writes_raise_guest_arm_write(logdir: Path, idp: str, home: str) -> None:
    """Adele's 23 real rows as a guest's: the guest alert, by object id, its e-mail and home shown.
    Before, the query read a short `idp` key the Activity Log never stores, and missed every guest."""
    (logdir / "SigninLogs.csv").unlink()  # Adele's sign-ins are a member's
    edit_rows(logdir / "AzureActivity.csv", as_guest(idp, GUEST_MAIL))
    alerts = {a["detection"]: a for a in replay_json(logdir)[0]}
    assert set(alerts) == {"guest-arm-write", "user-arm-write"}  # a guest is a user account too
    guest = alerts["guest-arm-write"]
    assert (guest["user_id"], guest["user_principal_name"]) == (ADELE_ID, GUEST_MAIL)
    assert guest["severity"] == "high"  # password-only portal writes
    assert guest["facts"]["Home tenant"] == home
    assert guest["facts"]["MFA"].startswith("NO")
    assert len(guest["event_ids"]) == 23
    assert "Actions (not writes)" not in guest["facts"]
    assert alerts["user-arm-write"]["user_principal_name"] == GUEST_MAIL


def test_the_member_export_raises_no_guest_alert(logdir: Path) -> None:
    """The same rows as exported: Adele's token names no identity provider, she is a member."""
    assert IDP not in (logdir / "AzureActivity.csv").read_text(encoding="utf-8-sig")
    found, _ = replay_json(logdir)
    assert "guest-arm-write" not in {a["detection"] for a in found}


def test_a_portal_session_of_actions_only_raises_no_user_arm_write(logdir: Path) -> None:
    """Adele's session with every operation an action (a Sentinel blade's requirement check,
    listKeys): nothing is raised. Before, actions were counted as ARM writes."""
    edit_rows(
        logdir / "AzureActivity.csv",
        lambda n, row: as_action(row, CHECK_REQUIREMENTS if n % 2 else LIST_KEYS),
    )
    text = (logdir / "AzureActivity.csv").read_text(encoding="utf-8")
    assert text.count(CHECK_REQUIREMENTS) + text.count(LIST_KEYS) >= 23
    assert not re.search(r"/(write|delete)\b", text, re.IGNORECASE)
    found, stderr = replay_json(logdir)
    assert found == []
    assert "skipped" not in stderr


def test_actions_that_come_with_writes_are_shown_apart(logdir: Path) -> None:
    """The first five rows made actions, the rest left as exported: one user-arm-write alert whose
    events are the writes and deletes, the actions a fact of their own."""

    def first_five(n: int, row: dict[str, str]) -> None:
        if n < 5:
            as_action(row, CHECK_REQUIREMENTS)

    edit_rows(logdir / "AzureActivity.csv", first_five)
    (alert,) = replay_json(logdir)[0]
    assert alert["detection"] == "user-arm-write"
    assert len(alert["event_ids"]) == 23 - 5
    assert alert["facts"]["Actions (not writes)"].endswith(CHECK_REQUIREMENTS.lower())
    assert "action" not in alert["facts"]["Operation names"]


# --------------------------------------------------------------------------- the mandatory-MFA detections

MANDATORY_MFA = ("mfa-blocked-automation", "ropc-sign-in", "guest-arm-write", "policy-mfa-audit")


def _as_az_cli(value: object) -> str:
    """A value as `az monitor log-analytics query -o json` prints it: always a string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value)  # "True" / "False"
    return "" if value is None else str(value)


def test_a_synthetic_tenant_exported_with_the_cli_raises_what_its_manifest_expects(tmp_path: Path) -> None:
    """Rows of every table as az CLI JSON exports: each mandatory-MFA detection fires in replay, with
    its own detection id, for exactly the principals the tenant's ground truth names."""
    from devstack.tenant import generate

    generated, logdir = tmp_path / "generated", tmp_path / "logs"
    logdir.mkdir()
    generate(generated, users=30, days=1, seed=5)
    for table_file in generated.glob("*.jsonl"):
        items = [
            {
                column: _as_az_cli(value)
                for column, value in json.loads(line).items()
                if column != "_IngestionTime"
            }
            for line in table_file.open()
        ]
        (logdir / f"{table_file.stem}.json").write_text(json.dumps(items))
    manifest = json.loads((generated / "tenant.json").read_text())

    result = replay(str(logdir), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stderr
    alerts = json.loads(result.stdout)
    raised = {(a["detection"], a["user_id"]) for a in alerts if a["detection"] in MANDATORY_MFA}
    expected = {
        (detection, p["object_id"])
        for p in manifest["principals"]
        for detection in p["expected"]
        if detection in MANDATORY_MFA
    }
    assert raised == expected
    assert {detection for detection, _ in raised} == set(MANDATORY_MFA)


def test_a_query_the_local_engine_refuses_ends_replay_with_a_message(
    logdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """E.g. the engine out of memory on an export with millions of rows for one principal."""
    from monitors.adapters.log_analytics import QueryFailed
    from monitors.cli import main

    def refused(*args: object, **kwargs: object) -> None:  # stands in for run_detection
        raise QueryFailed("Out of Memory Error: could not allocate block")

    monkeypatch.setattr("monitors.pipeline.run_detection", refused)
    assert main(["replay", str(logdir)]) == 2
    err = capsys.readouterr().err
    assert "error: user-arm-write: the local query engine failed: Out of Memory Error" in err


@pytest.mark.parametrize("missing", ["duckdb", "duckdb_kql"])
def test_without_the_development_requirements_replay_says_what_to_install(logdir: Path, missing: str) -> None:
    """The app's own requirements do not carry the local query engine replay runs on."""
    blocked = f"import sys; sys.modules[{missing!r}] = None; from monitors.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", blocked, "replay", str(logdir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{missing} is not installed" in result.stderr
    assert "requirements-dev.txt" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the fast ingest path

ODD_DYNAMICS = [
    ' {"idtyp": "user", "n": [1, 2.5, true, null]} ',  # spaces around an object: the object
    '{"a":"\\u00e9\\n"}',  # escapes
    "5",  # JSON scalars are their values
    '"quoted"',
    "true",
    "not json",  # anything else: a dynamic string
    '{"a":1} trailing',
    "{'single': 'quotes'}",
    "",  # empty: null
]


def _stored(engine: object, table: str) -> list[tuple[object, ...]]:
    con = engine._con  # type: ignore[attr-defined]
    return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()  # noqa: S608 - a table name


def test_replay_stores_exactly_what_the_general_ingest_stores(logdir: Path, tmp_path: Path) -> None:
    """Replay hands dynamic columns through as text and lets DuckDB parse them (ingest_typed); the
    tables hold the same values as when Python parses them and `ingest` stores them, odd values too."""
    import csv
    from datetime import UTC, datetime, timedelta

    from devstack.loganalytics import LogAnalyticsServer
    from monitors import exports

    with (logdir / "AzureActivity.csv").open(encoding="utf-8-sig", newline="") as source:
        header, *body = list(csv.reader(source))
    for n, text in enumerate(ODD_DYNAMICS):
        row = list(body[n])
        row[header.index("Claims_d")] = text
        row[header.index("Properties_d")] = text
        body.append(row)
    with (logdir / "AzureActivity.csv").open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *body])
    at = datetime.now(UTC) - timedelta(minutes=10)

    def stored(fast: bool) -> dict[str, list[tuple[object, ...]]]:
        engine = LogAnalyticsServer("replay", state_dir=tmp_path / str(fast))
        try:
            for table, path in exports.discover(logdir).files.items():
                rows = list(exports.read_export(path, table, exports.ReadReport(), dynamic_text=fast))
                if fast:
                    engine.ingest_typed(table, rows, at)
                else:
                    engine.ingest(table, [{**row, "_IngestionTime": at} for row in rows])
            return {table: _stored(engine, table) for table in exports.TABLES}
        finally:
            engine.stop()

    general, fast = stored(fast=False), stored(fast=True)
    assert len(general["AzureActivity"]) == 23 + len(ODD_DYNAMICS)
    assert fast == general


def test_a_row_the_engine_refuses_is_skipped_and_counted_the_rest_kept(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from devstack.loganalytics import LogAnalyticsServer
    from monitors import exports
    from monitors.cli import _ingest

    path = tmp_path / "AzureActivity.csv"
    path.write_text("EventDataId,TimeGenerated [UTC]\ne1,2026-01-01T00:00:00Z\n", encoding="utf-8")
    report = exports.ReadReport()
    list(exports.read_export(path, "AzureActivity", report))  # the report knows the file
    engine = LogAnalyticsServer("replay", state_dir=tmp_path)
    at = datetime(2026, 1, 2, tzinfo=UTC)
    good = {"EventDataId": "e1", "TimeGenerated": datetime(2026, 1, 1, tzinfo=UTC)}
    bad = {"EventDataId": "e2", "TimeGenerated": "not a time"}
    try:
        _ingest(engine, "AzureActivity", [good, bad, {**good, "EventDataId": "e3"}], at, report, path)
        ids = [
            row[0]
            for row in engine._con.execute('SELECT EventDataId FROM "AzureActivity" ORDER BY 1').fetchall()
        ]
    finally:
        engine.stop()
    assert ids == ["e1", "e3"]
    assert report.rows_skipped == 1
    assert "column 'TimeGenerated'" in report.examples()[0]


def test_the_engine_spills_rows_beyond_its_memory_limit_to_the_scratch_folder(tmp_path: Path) -> None:
    """Replay's engine: in memory up to its limit, the rest in its temporary folder (and no file
    database to write through); more rows than the limit still read back whole."""
    import random
    from datetime import UTC, datetime

    from devstack.loganalytics import LogAnalyticsServer

    spill = tmp_path / "spill"
    engine = LogAnalyticsServer("replay", state_dir=tmp_path, memory_limit="64MB", temp_directory=spill)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    noise = random.Random(7)  # noqa: S311 - test data, not secrets
    try:
        for batch in range(10):  # ~100 MB of text that does not compress
            rows = [
                {"EventDataId": f"{batch}-{i}", "Claims": f"{noise.getrandbits(40_000):x}"}
                for i in range(1_000)
            ]
            engine.ingest_typed("AzureActivity", rows, at)
        assert any(spill.iterdir())
        count, size = engine._con.execute(
            'SELECT count(*), sum(length(Claims)) FROM "AzureActivity"'
        ).fetchone()
    finally:
        engine.stop()
    assert count == 10_000
    assert size > 64 * 2**20


# --------------------------------------------------------------------------- directory changes (AuditLogs)


def _audit_rows() -> list[dict]:
    """break-glass-account-changed's own case rows: every kind of change to the accounts, and the
    same changes to an ordinary account (which must not fire)."""
    from monitors.detections.break_glass_account_changed import DETECTION

    return [row for case in DETECTION.cases for row in case.rows.get("AuditLogs", [])]


def _portal_time(iso: str) -> str:
    """The Log Analytics portal's CSV datetime: `11/20/2026, 2:40:00.000 AM` (tests/fixtures)."""
    from datetime import datetime

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (
        f"{moment.month}/{moment.day}/{moment.year}, "
        + moment.strftime("%-I:%M:%S.%f")[:-3]
        + moment.strftime(" %p")
    )


def _expect_audit_alerts(alerts: list[dict]) -> None:
    from monitors.detections.break_glass_account_changed import ALICE_ID, BG2_UPN, BG_GROUP, BG_ID

    changed = {
        a["user_id"] or a["user_principal_name"]: a
        for a in alerts
        if a["detection"] == "break-glass-account-changed"
    }
    assert set(changed) == {BG_ID, BG2_UPN, f"group {BG_GROUP}"}
    kinds = changed[BG_ID]["facts"]["Changes"]
    for kind in (
        "authentication methods",
        "password",
        "account state",
        "group membership",
        "Conditional Access",
    ):
        assert kind in kinds
    assert "directory role" in changed[BG2_UPN]["facts"]["Changes"]
    assert all(ALICE_ID not in json.dumps(a) for a in alerts)


def test_audit_logs_exported_with_the_cli_raise_break_glass_account_changed(tmp_path: Path) -> None:
    from monitors.detections.break_glass_account_changed import BG2_UPN, BG_GROUP, BG_ID

    items = [{column: _as_az_cli(value) for column, value in row.items()} for row in _audit_rows()]
    (tmp_path / "AuditLogs.json").write_text(json.dumps(items))
    alerts, stderr = replay_json(tmp_path, "--break-glass", BG_ID, "--break-glass", BG2_UPN,
                                 "--break-glass-group", BG_GROUP)  # fmt: skip
    assert "skipped" not in stderr
    _expect_audit_alerts(alerts)


def test_audit_logs_exported_from_the_portal_raise_break_glass_account_changed(tmp_path: Path) -> None:
    from monitors.detections.break_glass_account_changed import BG2_UPN, BG_GROUP, BG_ID

    rows = _audit_rows()
    columns = sorted({column for row in rows for column in row} - {"TimeGenerated"})
    with (tmp_path / "AuditLogs.csv").open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow(["TimeGenerated [UTC]", *columns])
        for row in rows:
            writer.writerow([_portal_time(row["TimeGenerated"]), *(_as_az_cli(row.get(c)) for c in columns)])
    env = {**os.environ, "BREAK_GLASS_ACCOUNTS": f"{BG_ID},{BG2_UPN}", "BREAK_GLASS_GROUPS": BG_GROUP}
    result = replay(str(tmp_path), "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stderr
    _expect_audit_alerts(json.loads(result.stdout))


# --- what replay did: rows per export, and per detection whether it could see what it reads


def report_lines(stderr: str) -> dict[str, str]:
    """The report's lines, keyed by their first word (a file or table name, or a detection id)."""
    return {
        line.split()[0]: line.strip()
        for line in stderr.splitlines()
        if line.startswith("  ") and line.split()
    }


def test_replay_reports_rows_per_export_and_what_each_detection_could_read(logdir: Path) -> None:
    alerts, stderr = replay_json(logdir)
    assert [a["detection"] for a in alerts] == ["user-arm-write"]  # stdout: the alerts, as before
    lines = report_lines(stderr)
    assert lines["AzureActivity.csv"].startswith("AzureActivity.csv (AzureActivity, csv): 23 rows read")
    assert lines["SigninLogs.csv"].startswith("SigninLogs.csv (SigninLogs, csv): 56 rows read")
    assert lines["AADNonInteractiveUserSignInLogs:"] == "AADNonInteractiveUserSignInLogs: no export"
    assert lines["AuditLogs:"] == "AuditLogs: no export"
    assert lines["guest-arm-write"] == "guest-arm-write              ran"
    # Directory changes are read from AuditLogs alone: without its export there is nothing to read.
    assert lines["break-glass-account-changed"] == (
        "break-glass-account-changed  could not run: no export of AuditLogs"
    )
    # Its sign-in lookup (the object id of a write without claims) reads both sign-in tables.
    assert (
        lines["user-arm-write"]
        == "user-arm-write               incomplete: no export of AADNonInteractiveUserSignInLogs"
    )
    # The training lab's 2021 sign-in export predates AuthenticationProtocol.
    assert lines["ropc-sign-in"] == (
        "ropc-sign-in                 incomplete: SigninLogs.csv has no AuthenticationProtocol column; "
        "no export of AADNonInteractiveUserSignInLogs"
    )
    assert lines["break-glass-weak-method"].endswith(
        "incomplete: no export of AADNonInteractiveUserSignInLogs"
    )


def test_an_export_a_detection_cannot_read_does_not_end_in_a_plain_no_alerts(logdir: Path) -> None:
    (logdir / "AzureActivity.csv").unlink()
    result = replay(str(logdir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No alerts in what the exports hold, but 10 of 10 detections could not")
    lines = report_lines(result.stderr)
    assert lines["guest-arm-write"].endswith("could not run: no export of AzureActivity")
    assert "SigninLogs.csv has no AuthenticationProtocol column" in lines["ropc-sign-in"]


def test_exports_with_every_column_the_detections_read_end_in_no_alerts(tmp_path: Path) -> None:
    for table in ("SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity", "AuditLogs"):
        (tmp_path / f"{table}.csv").write_text(",".join(SCHEMA[table]) + "\n", encoding="utf-8")
    result = replay(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No alerts.\n"
    lines = report_lines(result.stderr)
    assert lines["SigninLogs.csv"] == "SigninLogs.csv (SigninLogs, csv): 0 rows read"
    assert all(lines[d.id].split()[1:] == ["ran"] for d in DETECTIONS)


# --- bounded memory on any record, and structure too deep to follow

# Replay in a fresh process that reports its own peak memory on stderr's last line.
REPLAY_AND_MEASURE = (
    "import sys; from monitors.cli import main; code = main(sys.argv[1:]); "
    f"print(round({PEAK_MB}), file=sys.stderr); sys.exit(code)"
)


def test_an_over_long_record_is_skipped_and_the_rest_replayed_in_bounded_memory(logdir: Path) -> None:
    with (logdir / "AzureActivity.csv").open("a", encoding="utf-8") as out:
        out.write('"')
        for _ in range(160):  # 160 MB in one quoted field: no log row is like this
            out.write("x" * (1 << 20))
        out.write('"\n')
    result = subprocess.run(
        [sys.executable, "-c", REPLAY_AND_MEASURE, "replay", str(logdir), "--format", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (alert,) = json.loads(result.stdout)
    assert len(alert["event_ids"]) == 23  # every real row still replayed
    assert "skipped 1 malformed rows: AzureActivity.csv: row 24 (line 1233): " in result.stderr
    assert "a record longer than 16,777,216 characters" in result.stderr
    peak_mb = int(result.stderr.splitlines()[-1])
    assert peak_mb < 300, f"peak {peak_mb} MB"  # 155 MB without the record; the record held whole: GBs


def test_a_json_export_nested_too_deeply_exits_2_naming_the_file(tmp_path: Path) -> None:
    row = '{"TimeGenerated": "2026-11-20T08:00:00Z", "EventDataId": "e1"}'
    export = tmp_path / "AzureActivity.json"
    export.write_text(f'[{row}, {{"Claims": {"[" * 100_000}{"]" * 100_000}}}]', encoding="utf-8")
    result = replay(str(tmp_path))
    assert result.returncode == 2
    assert f"error: {export}: row 2 is JSON nested too deeply to read" in result.stderr
    assert "Traceback" not in result.stderr
