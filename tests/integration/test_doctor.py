"""`python -m monitors doctor` against the devstack: the same checks, the same lines, as after
`azd up` in Azure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.stack import Devstack
from monitors.cli import main
from monitors.detections.break_glass_account_changed import audit_row, user_target
from monitors.detections.break_glass_use import sign_in_row
from monitors.detections.user_arm_write import arm_row

DRILLED = "5b2d0c7e-3f41-4a8e-9d1c-6e0f7a2b9c13"  # a break-glass account that signed in last week
NEVER_SEEN = "9e8f7a6b-5c4d-4e3f-8a1b-0c9d8e7f6a5b"  # a mistyped id: no sign-in ever
TABLES = ("SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity", "AuditLogs")


def ingest_recent(devstack: Devstack, now: datetime) -> None:
    """One row in each table the detections read, ingested 4 minutes ago; the break-glass
    account's sign-in happened a week ago."""

    def at(row: dict, when: datetime) -> dict:
        return {
            **row,
            "TimeGenerated": when.isoformat(),
            "_IngestionTime": (now - timedelta(minutes=4)).isoformat(),
        }

    megan_id = "0d4c5a1e-8f3b-4b6a-9c2d-7e1f0a9b8c7d"
    megan = sign_in_row("doctor-1", megan_id, "megan@contoso.com")
    drill = sign_in_row("doctor-2", DRILLED, "breakglass1@contoso.onmicrosoft.com")
    devstack.log_analytics.ingest(
        "SigninLogs", [at(megan, now - timedelta(minutes=5)), at(drill, now - timedelta(days=7))]
    )
    devstack.log_analytics.ingest("AADNonInteractiveUserSignInLogs", [at(megan, now - timedelta(minutes=5))])
    write = arm_row("doctor-3", "megan@contoso.com", None)  # no claims: the Caller names a user
    devstack.log_analytics.ingest("AzureActivity", [at(write, now - timedelta(minutes=6))])
    reset = audit_row("doctor-4", "Reset user password", [user_target(megan_id, "megan@contoso.com")])
    devstack.log_analytics.ingest("AuditLogs", [at(reset, now - timedelta(minutes=7))])


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out.splitlines()


def starting(lines: list[str], prefix: str) -> list[str]:
    return [line for line in lines if line.startswith(prefix)]


def test_a_ready_deployment_passes_and_the_channel_gets_one_test_card(
    app_env: dict, devstack: Devstack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", DRILLED)
    ingest_recent(devstack, datetime.now(UTC))
    code, lines = doctor(capsys, "--send-test-card")
    assert code == 0, "\n".join(lines)
    assert starting(lines, "FAIL") == []
    assert lines[-1].startswith("all ")
    assert lines[-1].endswith(" checks passed")
    for table in TABLES:
        (line,) = starting(lines, f"PASS  table {table}: ")
        assert "newest ingested 4 min ago" in line
    assert len(starting(lines, "PASS  state table ")) == 4
    assert starting(lines, f"PASS  break-glass {DRILLED}: signed in within the last 90 days")
    assert starting(lines, "PASS  webhook teams_1 (127.0.0.1): accepted the test card")
    (card,) = devstack.teams.messages("oncall")
    assert "test card" in str(card)


def test_without_send_test_card_nothing_is_posted(
    app_env: dict, devstack: Devstack, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_recent(devstack, datetime.now(UTC))
    code, lines = doctor(capsys)
    assert code == 0, "\n".join(lines)
    assert starting(lines, "SKIP  webhook teams_1 (127.0.0.1): not posted to; add --send-test-card")
    assert devstack.teams.attempts() == []


def test_an_empty_workspace_fails_each_table_with_the_fix(
    app_env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = doctor(capsys)
    assert code == 1
    assert starting(lines, "PASS  workspace query")
    for table in TABLES:
        (line,) = starting(lines, f"FAIL  table {table}: no rows ingested in the last 24 h -> fix: ")
        assert "step 4" in line


def test_a_break_glass_id_never_seen_in_the_sign_in_logs_fails(
    app_env: dict, devstack: Devstack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", f"{DRILLED},{NEVER_SEEN}")
    ingest_recent(devstack, datetime.now(UTC))
    code, lines = doctor(capsys)
    assert code == 1
    assert starting(lines, f"PASS  break-glass {DRILLED}")
    (line,) = starting(lines, f"FAIL  break-glass {NEVER_SEEN}: no sign-in in the last 90 days -> fix: ")
    assert "az ad user show --id" in line


def test_an_identity_the_workspace_refuses_fails_with_the_role_to_grant(
    app_env: dict, devstack: Devstack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A token for another audience: the workspace answers 403, as for an identity without a role.
    monkeypatch.setenv("LOG_ANALYTICS_AUDIENCE", "https://api.loganalytics.us")
    ingest_recent(devstack, datetime.now(UTC))
    code, lines = doctor(capsys)
    assert code == 1
    (line,) = starting(lines, "FAIL  workspace query: ")
    assert "Log Analytics Reader" in line
    assert starting(lines, "FAIL  table ") == []  # not checked without access: one line says why


def test_a_webhook_that_refuses_the_card_fails_with_the_fix(
    app_env: dict, devstack: Devstack, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_recent(devstack, datetime.now(UTC))
    devstack.teams.set_signature("oncall", "rotated")  # the workflow was recreated: a new URL
    try:
        code, lines = doctor(capsys, "--send-test-card")
    finally:
        devstack.teams.set_signature("oncall", None)
    assert code == 1
    (line,) = starting(lines, "FAIL  webhook teams_1 (127.0.0.1): refused the test card: HTTP 401")
    assert "Who can trigger the flow" in line
    assert devstack.teams.messages() == []


def test_a_key_vault_reference_read_from_outside_the_app_is_said_not_checked(
    app_env: dict, devstack: Devstack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `az functionapp config appsettings list` shows for the webhook settings.
    monkeypatch.setenv(
        "TEAMS_WEBHOOK_URL",
        "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/teams-webhook-url/)",
    )
    ingest_recent(devstack, datetime.now(UTC))
    code, lines = doctor(capsys, "--send-test-card")
    assert code == 0, "\n".join(lines)
    assert starting(lines, "SKIP  webhook TEAMS_WEBHOOK_URL: a Key Vault reference")
    assert not [line for line in lines if "not posted to Teams" in line]  # doctor's none, not the app's
    assert devstack.teams.attempts() == []


def test_refused_settings_are_listed_and_nothing_else_runs(
    app_env: dict, devstack: Devstack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_SCHEDULE", "0 0 * * * *")  # hourly
    code, lines = doctor(capsys)
    assert code == 1
    (line, summary) = lines
    assert line.startswith("FAIL  settings: MONITOR_SCHEDULE is '0 0 * * * *', which leaves 60 minutes")
    assert "e.g. '0 */5 * * * *'" in line  # the fix
    assert summary == "1 of 1 checks failed"


def test_a_table_the_workspace_cannot_query_fails_alone(
    app_env: dict, devstack: Devstack, capsys: pytest.CaptureFixture[str]
) -> None:
    # As for a table nothing was ever exported to: the workspace answers 400 for that query only.
    ingest_recent(devstack, datetime.now(UTC))
    devstack.log_analytics.set_fault("invalid", count=1000, match="AzureActivity\n| summarize Rows")
    try:
        code, lines = doctor(capsys)
    finally:
        devstack.log_analytics.clear_faults()
    assert code == 1
    assert starting(lines, "PASS  workspace query")
    (line,) = starting(lines, "FAIL  table AzureActivity: query failed: ")
    assert "Activity Log export" in line
    assert len(starting(lines, "PASS  table ")) == len(TABLES) - 1
