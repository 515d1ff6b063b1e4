"""Every detection's own cases, run through its real KQL on the local engine; catalogue invariants."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.local_reader import LocalLogsReader
from devstack.loganalytics import LogAnalyticsServer
from monitors.detections import DETECTIONS
from monitors.detections.base import Case, Context, Detection, Expect, mismatches
from monitors.model import Finding, Principal, Severity
from monitors.pipeline import DetectionRun, run_detection
from monitors.watermark import Window

NOW = datetime.now(UTC)
# The cases' rows carry TimeGenerated in late 2026; a window this wide covers them whatever today is.
WINDOW = Window(start=NOW - timedelta(minutes=30), end=NOW, earliest_time=datetime(2000, 1, 1, tzinfo=UTC))
# Early enough in the window that refusals read late (mfa-blocked-automation's step-up settle) are read.
INGESTED = NOW - timedelta(minutes=20)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> LogAnalyticsServer:
    return LogAnalyticsServer("cases", state_dir=tmp_path_factory.mktemp("engine"))


CASES = [pytest.param(d, c, id=f"{d.id}: {c.name}") for d in DETECTIONS for c in d.cases]


def run_case(detection: Detection, case: Case, engine: LogAnalyticsServer) -> DetectionRun:
    engine.clear()
    for table, rows in case.rows.items():
        engine.ingest(table, [{**row, "_IngestionTime": INGESTED.isoformat()} for row in rows])
    return run_detection(detection, LocalLogsReader(engine), WINDOW, case.context, NOW)


def case_named(detection: Detection, name: str) -> Case:
    (case,) = (c for c in detection.cases if c.name == name)
    return case


@pytest.mark.parametrize(("detection", "case"), CASES)
def test_detection_case(detection: Detection, case: Case, engine: LogAnalyticsServer) -> None:
    run = run_case(detection, case, engine)
    assert run.skipped == 0, run.skip_reasons
    assert mismatches(case, run.findings) == []
    for finding in run.findings:
        assert finding.detection == detection.id
        assert detection.severity.at_least(finding.severity)  # declared severity is the ceiling


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
        if not any(c.findings for c in d.cases):
            problems.append(f"{d.id}: no case that fires")
        if not any(not c.findings for c in d.cases):
            problems.append(f"{d.id}: no case that must not fire")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("detection", DETECTIONS, ids=lambda d: d.id)
def test_a_window_split_by_the_row_limit_gives_the_same_findings(
    detection: Detection, engine: LogAnalyticsServer
) -> None:
    """Rows ingested across the window, queried with a tiny row limit: halves must add up."""
    engine.clear()
    fired = [c for c in detection.cases if c.findings]
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


def _finding_for(principal: Principal, *event_ids: str) -> Finding:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    return Finding(
        detection="user-arm-write", severity=Severity.HIGH, principal=principal, headline="h", facts=(),
        events=(), event_ids=event_ids, first_time=at, last_time=at,
    )  # fmt: skip


def test_a_case_check_tells_the_wrong_principal_and_wrong_events_from_the_right_ones() -> None:
    """The case check compares principals and event ids exactly: a finding about someone else, a
    missing or extra event, and a second finding for the same rows each fail it."""
    adele = Principal(
        user_id="9b117c67-170e-4aed-9702-658b3fddc889", user_principal_name="adelev@contoso.com"
    )
    other = Principal(user_id="5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", user_principal_name="lars@fabrikam.com")
    case = Case(name="n", rows={}, findings=(Expect(principal=adele.user_id or "", event_ids=("e1", "e2")),))
    assert mismatches(case, [_finding_for(adele, "e2", "e1")]) == []
    assert mismatches(case, [_finding_for(other, "e1", "e2")]) == [
        "expected, not found: ('9b117c67-170e-4aed-9702-658b3fddc889', ('e1', 'e2'))",
        "found, not expected: ('5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d', ('e1', 'e2'))",
    ]
    assert mismatches(case, [_finding_for(adele, "e1")])  # an event missing
    assert mismatches(case, [_finding_for(adele, "e1", "e2", "e3")])  # an event too many
    assert mismatches(case, [_finding_for(adele, "e1", "e2")] * 2) == [
        "found, not expected: ('9b117c67-170e-4aed-9702-658b3fddc889', ('e1', 'e2'))"
    ]
    assert mismatches(case, []) != []
    # A UPN-keyed expectation is the lower-case UPN; an episode does not change who it is about.
    episode = Principal(user_id=None, user_principal_name="ops@contoso.com", episode="drill")
    by_upn = Case(name="n", rows={}, findings=(Expect(principal="ops@contoso.com", event_ids=("e9",)),))
    assert mismatches(by_upn, [_finding_for(episode, "e9")]) == []


def test_user_arm_write_counts_operations_as_arm_does_in_a_real_export(engine: LogAnalyticsServer) -> None:
    """The real Activity Log export of one user deleting a lab: 23 rows. Reading them: 11 writes
    and deletes (Start, Accept and Success rows of one operation share its CorrelationId, and a
    resource group's delete logs each resource it deletes under the group's CorrelationId), over 7
    correlation ids, which is what the count said before."""
    from monitors import exports
    from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE

    path = Path("tests/fixtures/sentinel-training-lab/azureActivity_adele.csv")
    rows = list(exports.read_export(path, "AzureActivity", exports.ReadReport(), dynamic_text=True))
    engine.clear()
    engine.ingest_typed("AzureActivity", rows, INGESTED)
    run = run_detection(USER_ARM_WRITE, LocalLogsReader(engine), WINDOW, Context(), NOW)
    (finding,) = run.findings
    assert finding.principal.user_id == "9b117c67-170e-4aed-9702-658b3fddc889"
    assert dict(finding.facts)["Operations"] == "11 writes and deletes (23 log rows)"
    assert len(finding.event_ids) == 23


def test_a_refusal_a_person_may_answer_is_read_once_its_answer_can_have_arrived(
    engine: LogAnalyticsServer,
) -> None:
    """mfa-blocked-automation: a silent step-up refusal (50074) ingested in the last minutes of a
    window is read by the tick whose window lies entra.STEP_UP_SETTLE later, exactly once; an MFA
    registration refusal (50079, no step-up a person can answer) is read at once."""
    from monitors.detections.entra import STEP_UP_SETTLE
    from monitors.detections.mfa_blocked_automation import DETECTION as MFA_BLOCKED
    from monitors.detections.mfa_blocked_automation import sign_in_row

    engine.clear()
    ingested = (NOW - timedelta(minutes=5)).isoformat()
    engine.ingest(
        "AADNonInteractiveUserSignInLogs",
        [
            {**sign_in_row("n1"), "_IngestionTime": ingested},
            {**sign_in_row("n2", "50079"), "_IngestionTime": ingested},
        ],
    )
    reader = LocalLogsReader(engine)
    (now,) = run_detection(MFA_BLOCKED, reader, WINDOW, Context(), NOW).findings
    assert now.event_ids == ("n2",)
    later = Window(start=WINDOW.end, end=WINDOW.end + STEP_UP_SETTLE, earliest_time=WINDOW.earliest_time)
    (settled,) = run_detection(MFA_BLOCKED, reader, later, Context(), later.end).findings
    assert settled.event_ids == ("n1",)
    last = Window(start=later.end, end=later.end + STEP_UP_SETTLE, earliest_time=WINDOW.earliest_time)
    assert run_detection(MFA_BLOCKED, reader, last, Context(), last.end).findings == ()


def test_one_key_per_user_gives_a_upn_only_observation_the_object_id_its_user_has_elsewhere() -> None:
    """The same UPN in any case takes the object id; another user's, or one nobody names, keeps its UPN."""
    from dataclasses import dataclass

    from monitors.detections.base import one_key_per_user

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Seen:
        principal: Principal

    adele = "9b117c67-170e-4aed-9702-658b3fddc889"
    seen = [
        Seen(principal=Principal(user_id=None, user_principal_name="AdeleV@contoso.com")),
        Seen(principal=Principal(user_id=adele, user_principal_name="adelev@contoso.com")),
        Seen(principal=Principal(user_id=None, user_principal_name="ops@contoso.com")),
    ]
    assert [s.principal.key for s in one_key_per_user(seen)] == [adele, adele, "ops@contoso.com"]


class Baseline:
    """A recording fake of the baseline: holds `held`, remembers every key a tick asked for."""

    def __init__(self, held: set[str]) -> None:
        self.held, self.asked = held, set[str]()

    def known_principals(self, detection: str, principal_keys: Iterable[str]) -> frozenset[str]:
        self.asked |= set(principal_keys)
        return frozenset(self.held & set(principal_keys))

    def seen_events(self, detection: str, earliest: datetime, latest: datetime) -> frozenset[str]:
        raise AssertionError("a once-per-principal detection reads the baseline")


def _adeles_write(engine: LogAnalyticsServer, object_id: str | None) -> LocalLogsReader:
    """One ARM write by AdeleV@contoso.com: with token claims naming `object_id`, or without claims
    (None). Shapes: the Caller and claim keys of the real export
    tests/fixtures/sentinel-training-lab/azureActivity_adele.csv; a row without claims keeps only
    its Caller."""
    from monitors.detections.user_arm_write import AMR, OID, UPN, arm_row

    token = None if object_id is None else {AMR: "pwd", UPN: "AdeleV@contoso.com", OID: object_id}
    engine.clear()
    engine.ingest(
        "AzureActivity",
        [{**arm_row("w1", "AdeleV@contoso.com", token), "_IngestionTime": INGESTED.isoformat()}],
    )
    return LocalLogsReader(engine)


@pytest.mark.parametrize(
    ("claims", "held", "asked"),
    [
        # object id alerted first (its alert wrote the alias of the UPN key); now a row without claims
        (
            False,
            {"9b117c67-170e-4aed-9702-658b3fddc889", "alias|adelev@contoso.com"},
            {"adelev@contoso.com", "alias|adelev@contoso.com"},
        ),
        # a row without claims alerted first, keyed by the plain UPN; now a row with the object id
        (True, {"adelev@contoso.com"}, {"9b117c67-170e-4aed-9702-658b3fddc889", "adelev@contoso.com"}),
    ],
)
def test_a_user_the_baseline_holds_under_either_key_does_not_alert_again(
    engine: LogAnalyticsServer, claims: bool, held: set[str], asked: set[str]
) -> None:
    """The tick asks the baseline for each user's key and the one other entry its same user
    wrote: the plain UPN key for a row with an object id, the alias for a row without."""
    from monitors.detections.user_arm_write import ADELE
    from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE

    reader = _adeles_write(engine, ADELE if claims else None)
    (fresh,) = run_detection(USER_ARM_WRITE, reader, WINDOW, Context(), NOW, memory=Baseline(set())).findings
    assert fresh.principal.key == (ADELE if claims else "adelev@contoso.com")
    baseline = Baseline(held)
    assert run_detection(USER_ARM_WRITE, reader, WINDOW, Context(), NOW, memory=baseline).findings == ()
    assert baseline.asked == asked
    # another user's entries do not hide this one
    other = Baseline({"1f0b1e7c-0000-4000-8000-000000000000", "alex@contoso.com", "alias|alex@contoso.com"})
    assert len(run_detection(USER_ARM_WRITE, reader, WINDOW, Context(), NOW, memory=other).findings) == 1


def test_a_new_account_given_a_former_holders_upn_is_not_known_by_that_holders_alias(
    engine: LogAnalyticsServer,
) -> None:
    """Adele alerted by object id (her object id and the alias of her UPN key held). Her UPN now
    belongs to a new account with its own object id: its first write alerts."""
    from monitors.detections.user_arm_write import ADELE
    from monitors.detections.user_arm_write import DETECTION as USER_ARM_WRITE

    successor = "00000000-0000-4000-8000-0000000005c0"
    reader = _adeles_write(engine, successor)
    baseline = Baseline({ADELE, "alias|adelev@contoso.com"})
    (finding,) = run_detection(USER_ARM_WRITE, reader, WINDOW, Context(), NOW, memory=baseline).findings
    assert finding.principal.key == successor
    assert baseline.asked == {successor, "adelev@contoso.com"}
