"""Every detection's own cases, run through its real KQL on the local engine; catalogue invariants."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.local_reader import LocalLogsReader
from devstack.loganalytics import LogAnalyticsServer
from monitors.detections import DETECTIONS
from monitors.detections.base import Case, Context, Detection
from monitors.pipeline import DetectionRun, run_detection
from monitors.watermark import Window

NOW = datetime.now(UTC)
# The cases' rows carry TimeGenerated in late 2026; a window this wide covers them whatever today is.
WINDOW = Window(start=NOW - timedelta(minutes=30), end=NOW, earliest_time=datetime(2000, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> LogAnalyticsServer:
    return LogAnalyticsServer("cases", state_dir=tmp_path_factory.mktemp("engine"))


CASES = [pytest.param(d, c, id=f"{d.id}: {c.name}") for d in DETECTIONS for c in d.cases]


def run_case(detection: Detection, case: Case, engine: LogAnalyticsServer) -> DetectionRun:
    engine.clear()
    for table, rows in case.rows.items():
        engine.ingest(
            table, [{**row, "_IngestionTime": (NOW - timedelta(minutes=5)).isoformat()} for row in rows]
        )
    return run_detection(detection, LocalLogsReader(engine), WINDOW, case.context, NOW)


def case_named(detection: Detection, name: str) -> Case:
    (case,) = (c for c in detection.cases if c.name == name)
    return case


@pytest.mark.parametrize(("detection", "case"), CASES)
def test_detection_case(detection: Detection, case: Case, engine: LogAnalyticsServer) -> None:
    run = run_case(detection, case, engine)
    assert run.skipped == 0, run.skip_reasons
    assert len(run.findings) == case.findings
    for finding in run.findings:
        assert finding.detection == detection.id
        assert detection.severity.at_least(finding.severity)  # declared severity is the ceiling
        assert finding.event_ids


def test_actions_with_writes_are_a_fact_of_the_alert_never_its_operations(engine: LogAnalyticsServer) -> None:
    """user-arm-write: a listKeys beside a delete is listed apart; the writes' rows are the events."""
    from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE

    case = case_named(USER_ARM_WRITE, "actions with a delete: one finding, the actions counted apart")
    (finding,) = run_case(USER_ARM_WRITE, case, engine).findings
    facts = dict(finding.facts)
    assert facts["Actions (not writes)"] == "1: microsoft.storage/storageaccounts/listkeys/action"
    assert facts["Operations"] == "1 writes and deletes (1 log rows)"
    assert facts["Operation names"] == "microsoft.web/sites/delete"
    assert finding.event_ids == ("e14",)


def test_a_user_arm_write_without_actions_has_no_actions_fact(engine: LogAnalyticsServer) -> None:
    from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE

    (finding,) = run_case(USER_ARM_WRITE, USER_ARM_WRITE.cases[0], engine).findings
    assert "Actions (not writes)" not in dict(finding.facts)


def test_a_guests_home_and_actions_are_read_from_its_token(engine: LogAnalyticsServer) -> None:
    """guest-arm-write: the home tenant from the identity provider claim, the e-mail as the guest,
    actions apart from the writes, a personal Microsoft account named as such."""
    from monitors.detections.guest_arm_write import DETECTION as GUEST_ARM_WRITE
    from monitors.detections.guest_arm_write import GUEST_ID, GUEST_MAIL, HOME_TENANT, MSA_GUEST_MAIL

    case = case_named(GUEST_ARM_WRITE, "a guest's actions with a write: one alert, the actions listed apart")
    (finding,) = run_case(GUEST_ARM_WRITE, case, engine).findings
    facts = dict(finding.facts)
    assert (finding.principal.user_id, finding.principal.user_principal_name) == (GUEST_ID, GUEST_MAIL)
    assert facts["Home tenant"] == HOME_TENANT
    assert facts["Writes and deletes"] == "1 (1 log rows): microsoft.web/sites/delete"
    assert facts["Actions (not writes)"] == "1: microsoft.storage/storageaccounts/listkeys/action"
    assert finding.event_ids == ("g5",)
    assert [e.event_id for e in finding.events] == ["g5"]

    case = case_named(
        GUEST_ARM_WRITE, "a personal Microsoft account guest (idp live.com) deletes an action group, with MFA"
    )
    (finding,) = run_case(GUEST_ARM_WRITE, case, engine).findings
    assert finding.principal.user_principal_name == MSA_GUEST_MAIL
    assert dict(finding.facts)["Home tenant"] == "a personal Microsoft account (live.com)"
    assert "Actions (not writes)" not in dict(finding.facts)


def test_catalogue_invariants() -> None:
    """Collect every offender before failing, so one run shows everything to fix."""
    problems = []
    ids = [d.id for d in DETECTIONS]
    problems += [f"duplicate id {i}" for i in set(ids) if ids.count(i) > 1]
    for d in DETECTIONS:
        if not re.fullmatch(r"[a-z]+(-[a-z]+)+", d.id):
            problems.append(f"{d.id}: id must be kebab-case")
        for name in ("title", "description", "runbook", "false_positives", "mitre"):
            if not getattr(d, name):
                problems.append(f"{d.id}: {name} is empty")
        if not all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in d.mitre):
            problems.append(f"{d.id}: MITRE ids must look like T1078.004")
        if not Path(d.query_file).is_file():
            problems.append(f"{d.id}: {d.query_file} is missing")
        if not any(c.findings > 0 for c in d.cases):
            problems.append(f"{d.id}: no case that fires")
        if not any(c.findings == 0 for c in d.cases):
            problems.append(f"{d.id}: no case that must not fire")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("detection", DETECTIONS, ids=lambda d: d.id)
def test_a_window_split_by_the_row_limit_gives_the_same_findings(
    detection: Detection, engine: LogAnalyticsServer
) -> None:
    """Rows ingested across the window, queried with a tiny row limit: halves must add up."""
    engine.clear()
    fired = [c for c in detection.cases if c.findings > 0]
    # Round-robin over the cases, so one principal's rows sit between other principals' rows
    # and the halving (which stops once a window holds one principal) must cut through them.
    per_case = [[(table, row) for table, rows in c.rows.items() for row in rows] for c in fired]
    interleaved = [pair for layer in itertools.zip_longest(*per_case) for pair in layer if pair]
    for n, (table, row) in enumerate(interleaved):
        ingested = NOW - timedelta(minutes=25) + timedelta(seconds=37 * n)
        id_column = "EventDataId" if table == "AzureActivity" else "Id"
        engine.ingest(table, [{**row, id_column: f"row-{n}", "_IngestionTime": ingested.isoformat()}])
    rows_seen = len(interleaved)
    context = fired[-1].context
    whole = run_detection(detection, LocalLogsReader(engine), WINDOW, context, NOW)
    split = run_detection(detection, LocalLogsReader(engine), WINDOW, context, NOW, split_at_rows=2)
    assert whole.findings
    key = lambda f: (f.principal.key, sorted(f.event_ids))  # noqa: E731
    assert sorted(map(key, split.findings)) == sorted(map(key, whole.findings))
    assert rows_seen > 2  # so a limit of 2 rows really made it query in pieces


def test_a_partial_result_is_split_not_taken_as_complete(tmp_path: Path) -> None:
    """The engine caps results at 2 rows and says 'partial', as Log Analytics does at 500,000."""
    from monitors.detections.break_glass_use import ACCOUNTS, BG_ID, BG_UPN, sign_in_row
    from monitors.detections.break_glass_use import DETECTION as BREAK_GLASS

    capped = LogAnalyticsServer("capped", state_dir=tmp_path, max_rows=2)
    for n in range(5):
        ingested = NOW - timedelta(minutes=20) + timedelta(minutes=n)
        capped.ingest(
            "SigninLogs", [{**sign_in_row(f"s{n}", BG_ID, BG_UPN), "_IngestionTime": ingested.isoformat()}]
        )
    run = run_detection(BREAK_GLASS, LocalLogsReader(capped), WINDOW, Context(break_glass=ACCOUNTS), NOW)
    (finding,) = run.findings
    assert sorted(finding.event_ids) == [f"s{n}" for n in range(5)]


def test_a_break_glass_change_says_who_changed_what(engine: LogAnalyticsServer) -> None:
    """break-glass-account-changed: each change's kind, initiator, IP and old and new values;
    a Conditional Access change says where the account stood before and after."""
    from monitors.detections import break_glass_account_changed as changed

    burst = "security info, password, disabled and deleted in one tick are one alert per account"
    case = case_named(changed.DETECTION, burst)
    (finding,) = run_case(changed.DETECTION, case, engine).findings
    assert finding.principal.user_id == changed.BG_ID
    facts = dict(finding.facts)
    assert facts["Changes"] == "5: authentication methods, password, account state"
    assert facts["Changed by"] == f"mallory@contoso.com, {changed.BG_UPN}, application Provisioning Script"
    assert facts["From"] == "198.51.100.23, 203.0.113.50"
    lines = {line.event_id: dict(line.fields) for line in finding.events}
    disabled = lines[changed.DISABLED["Id"]]
    assert disabled["What"] == "account state"
    assert disabled["Changed"] == "AccountEnabled: True → False"
    assert disabled["By"] == "mallory@contoso.com (9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d)"
    assert lines[changed.BY_APP["Id"]]["IP"] == "not in the log"
    assert lines[changed.SECURITY_INFO_DELETED["Id"]]["Result"] == (
        "success: Admin deleted Fido2 security key for user"
    )

    case = case_named(changed.DETECTION, "a policy stops excluding the account's group")
    (finding,) = run_case(changed.DETECTION, case, engine).findings
    assert finding.principal.label == f"group {changed.BG_GROUP}"
    (line,) = finding.events
    assert dict(line.fields)["What"] == (
        "Conditional Access policy 'Require MFA for admins': excludeGroups before, not named after"
    )

    case = case_named(changed.DETECTION, "the account taken out of its Conditional Access exclusion group")
    (finding,) = run_case(changed.DETECTION, case, engine).findings
    (line,) = finding.events
    assert dict(line.fields)["Changed"] == (
        f"Group.ObjectID: {changed.BG_GROUP} → (none), "
        "Group.DisplayName: CA exclusion - emergency access → (none)"
    )


def test_a_failed_break_glass_sign_in_pivots_to_its_ip(engine: LogAnalyticsServer) -> None:
    """break-glass-use: successful sign-ins of other accounts from the failing IP within an hour
    either side are on the card; later ones and other IPs are not."""
    from monitors.detections.break_glass_use import DETECTION as BREAK_GLASS_USE
    from monitors.detections.break_glass_use import SPRAYED_UPN

    case = case_named(
        BREAK_GLASS_USE, "a failed sign-in lists other accounts' successes from its IP within the hour"
    )
    (finding,) = run_case(BREAK_GLASS_USE, case, engine).findings
    pivot = dict(finding.facts)["Other accounts signed in from the failing IPs (±1 h)"]
    # only the sign-in 20 minutes later from the same IP: not the one three hours later, not carol's
    # from another IP, not the break-glass account's own
    assert pivot == f"{SPRAYED_UPN} 2026-11-20T03:32:00.0000000Z"
    (line,) = finding.events
    assert dict(line.fields)["Same IP, other accounts (±1 h)"] == pivot

    (quiet,) = run_case(
        BREAK_GLASS_USE, case_named(BREAK_GLASS_USE, "interactive FIDO2 sign-in"), engine
    ).findings
    assert "Other accounts signed in from the failing IPs (±1 h)" not in dict(quiet.facts)
