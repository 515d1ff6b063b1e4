"""The decisions of `python -m monitors doctor`, over plain values (the devstack runs the whole
command: tests/integration/test_doctor.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitors.adapters.teams import PostResult
from monitors.doctor import (
    Check,
    break_glass_check,
    report,
    settings_checks,
    table_check,
    webhook_check,
    without_key_vault_webhooks,
)
from monitors.model import Severity
from monitors.settings import BreakGlassAccounts, Webhook, load_settings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/teams-webhook-url-2/)"


def test_a_table_within_its_silence_hours_passes_and_says_how_fresh() -> None:
    check = table_check("SigninLogs", 120, NOW - timedelta(minutes=119), 2, NOW)
    assert check.passed is True
    assert check.detail == "120 rows in the last 24 h, newest ingested 119 min ago"


def test_a_table_silent_longer_than_its_hours_fails() -> None:
    check = table_check("SigninLogs", 120, NOW - timedelta(minutes=121), 2, NOW)
    assert check.passed is False
    assert "longer than its 2 h" in check.detail
    assert "SOURCE_SILENCE_HOURS" in check.fix


def test_an_empty_table_fails_unless_it_is_not_watched() -> None:
    assert table_check("AzureActivity", 0, None, 6, NOW).passed is False
    assert table_check("AzureActivity", 0, None, 0, NOW).passed is True
    # Not watched: any age passes, and the age is still shown.
    assert table_check("AzureActivity", 3, NOW - timedelta(days=3), 0, NOW).detail.endswith("72 h ago")


def test_break_glass_accounts_are_matched_by_id_and_by_upn_in_any_case() -> None:
    accounts = BreakGlassAccounts(
        object_ids=frozenset(
            {"5b2d0c7e-3f41-4a8e-9d1c-6e0f7a2b9c13", "9e8f7a6b-5c4d-4e3f-8a1b-0c9d8e7f6a5b"}
        ),
        upns=frozenset({"bg2@contoso.com"}),
    )
    seen = [
        {"UserId": "5B2D0C7E-3F41-4A8E-9D1C-6E0F7A2B9C13", "UserPrincipalName": "bg1@contoso.com"},
        {"UserId": "1c1c1c1c-0000-4000-8000-000000000001", "UserPrincipalName": "bg2@contoso.com"},
    ]
    found = {c.name: c.passed for c in break_glass_check(accounts, seen, 90)}
    assert found == {
        "break-glass 5b2d0c7e-3f41-4a8e-9d1c-6e0f7a2b9c13": True,
        "break-glass 9e8f7a6b-5c4d-4e3f-8a1b-0c9d8e7f6a5b": False,
        "break-glass bg2@contoso.com": True,
    }


def test_a_refused_card_names_the_trigger_setting_only_for_401_and_403() -> None:
    hook = Webhook(name="teams_1", url="https://x.logic.azure.com/w?sig=s", min_severity=Severity.LOW)
    unauthorized = webhook_check(hook, PostResult(delivered=False, status=401, error="HTTP 401 from x"))
    gone = webhook_check(hook, PostResult(delivered=False, status=404, error="HTTP 404 from x"))
    assert "Anyone" in unauthorized.fix
    assert "Anyone" not in gone.fix
    assert "sig=" not in unauthorized.line + gone.line  # the URL is a secret


def test_key_vault_references_are_left_out_with_their_severities() -> None:
    env = {
        "TEAMS_WEBHOOK_URL": "https://x.logic.azure.com/w?sig=s",
        "TEAMS_WEBHOOK_URL_2": REFERENCE,
        "TEAMS_WEBHOOK_MIN_SEVERITY_2": "high",
        "BREAK_GLASS_ACCOUNTS": "none",
    }
    kept, checks = without_key_vault_webhooks(env)
    assert kept == {"BREAK_GLASS_ACCOUNTS": "none", "TEAMS_WEBHOOK_URL": "https://x.logic.azure.com/w?sig=s"}
    assert [(c.name, c.passed) for c in checks] == [("webhook TEAMS_WEBHOOK_URL_2", None)]
    first, _ = without_key_vault_webhooks({**env, "TEAMS_WEBHOOK_URL": REFERENCE.replace("-2", "")})
    assert first == {"BREAK_GLASS_ACCOUNTS": "none", "TEAMS_WEBHOOK_URL": "none"}


def test_one_line_per_check_and_failure_only_from_a_fail() -> None:
    checks = [
        Check(name="a", passed=True, detail="fine"),
        Check(name="b", passed=None, detail="not\nchecked"),
        Check(name="c", passed=False, detail="broken", fix="mend it"),
    ]
    text, passed = report(checks)
    assert text.splitlines() == [
        "PASS  a: fine",
        "SKIP  b: not checked",
        "FAIL  c: broken -> fix: mend it",
        "1 of 3 checks failed",
    ]
    assert passed is False
    assert report(checks[:2]) == ("PASS  a: fine\nSKIP  b: not checked\nall 2 checks passed", True)


def test_the_watchdog_period_must_match_the_schedule_when_known() -> None:
    settings = load_settings(
        {
            "LOG_ANALYTICS_WORKSPACE_ID": "d5c0d5c0-0000-4000-8000-000000000001",
            "STATE_TABLE_ENDPOINT": "https://st.table.core.windows.net",
            "TEAMS_WEBHOOK_URL": "none",
            "BREAK_GLASS_ACCOUNTS": "none",
            "MONITOR_SCHEDULE": "0 */10 * * * *",
        }
    )
    assert [c.name for c in settings_checks(settings) if c.passed is False] == []
    assert [c.name for c in settings_checks(settings, watchdog_minutes="10") if c.passed is False] == []
    (mismatch,) = [c for c in settings_checks(settings, watchdog_minutes="5") if c.passed is False]
    assert mismatch.name == "watchdog"
    assert "azd env set MONITOR_SCHEDULE_MINUTES 10" in mismatch.fix
