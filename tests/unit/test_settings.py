import pytest

from monitors.model import Severity
from monitors.settings import MAX_EXTRA_WEBHOOKS, SettingsError, load_settings

VALID = {
    "LOG_ANALYTICS_WORKSPACE_ID": "11111111-2222-4333-8444-555555555555",
    "STATE_TABLE_ENDPOINT": "https://stmfamon.table.core.windows.net",
    "MONITOR_SCHEDULE": "0 */5 * * * *",
    "TEAMS_WEBHOOK_URL": "https://abc.environment.api.powerplatform.com/powerautomate/automations?sig=SECRET123",
    "BREAK_GLASS_ACCOUNTS": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee, BG-Admin2@Contoso.onmicrosoft.com",
}

# What App Service leaves in a setting when it cannot resolve the reference.
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault(VaultName=kv-mfamon;SecretName=teams-webhook-url)"


def problems(**changes: str | None) -> list[str]:
    env = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return caught.value.problems


def test_valid_settings_are_typed() -> None:
    settings = load_settings(VALID)
    assert settings.workspace_id == "11111111-2222-4333-8444-555555555555"
    assert settings.log_analytics_endpoint == "https://api.loganalytics.io"
    assert settings.log_analytics_audience == "https://api.loganalytics.io"
    assert settings.break_glass.object_ids == {"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"}
    assert settings.break_glass.upns == {"bg-admin2@contoso.onmicrosoft.com"}
    assert [w.min_severity for w in settings.webhooks] == [Severity.LOW]
    assert settings.late_arrival_hours == 48
    assert settings.history_auth == "function-key"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "LOG_ANALYTICS_WORKSPACE_ID",
            "not-a-guid",
            "LOG_ANALYTICS_WORKSPACE_ID is 'not-a-guid', not a GUID",
        ),
        ("LOG_ANALYTICS_WORKSPACE_ID", None, "LOG_ANALYTICS_WORKSPACE_ID is missing"),
        ("STATE_TABLE_ENDPOINT", "http://x.table.core.windows.net", "STATE_TABLE_ENDPOINT is 'http"),
        ("LOG_ANALYTICS_ENDPOINT", "ftp://api.loganalytics.io", "not an https:// URL"),
        ("MONITOR_SCHEDULE", "every 5 minutes", "MONITOR_SCHEDULE is 'every 5 minutes'"),
        ("MONITOR_SCHEDULE", None, "MONITOR_SCHEDULE is missing"),
        ("BREAK_GLASS_ACCOUNTS", "bg-admin; not an account", "BREAK_GLASS_ACCOUNTS has 'bg-admin'"),
        ("TEAMS_WEBHOOK_MIN_SEVERITY", "urgent", "use one of low, medium, high, critical"),
        ("LATE_ARRIVAL_HOURS", "2", "between 48"),
        ("HISTORY_AUTH", "sso", "HISTORY_AUTH is 'sso'; use function-key or easy-auth"),
        ("AZURE_CLIENT_ID", "xyz", "AZURE_CLIENT_ID is 'xyz', not a GUID"),
        ("WAIVER_MAX_DAYS", "0", "WAIVER_MAX_DAYS is 0; it must be between 1 and 365"),
        ("WAIVER_MAX_DAYS", "366", "between 1 and 365"),
        ("WAIVER_MAX_DAYS", "half a year", "WAIVER_MAX_DAYS is 'half a year', not a whole number of days"),
        ("WAIVER_REMINDER_DAYS", "61", "WAIVER_REMINDER_DAYS is 61; it must be between 0 and 60"),
        ("WAIVER_REMINDER_DAYS", "-1", "between 0 and 60"),
        ("DISABLED_DETECTIONS", "user-arm-write,typo-write", "DISABLED_DETECTIONS names 'typo-write'"),
        ("DISABLED_DETECTIONS", "Break-Glass-Use", "break-glass-use, which cannot be switched off"),
        ("DISABLED_DETECTIONS", "source-silent", "source-silent, which cannot be switched off"),
        (
            "DISABLED_DETECTIONS",
            "break-glass-account-changed",
            "break-glass-account-changed, which cannot be switched off",
        ),
        ("BREAK_GLASS_GROUPS", "ca-exclusion", "BREAK_GLASS_GROUPS has 'ca-exclusion', not a group"),
        ("BREAK_GLASS_DRILL_DAYS", "3", "BREAK_GLASS_DRILL_DAYS is 3; it must be between 7 and 365"),
        ("BREAK_GLASS_DRILL_DAYS", "quarterly", "not a whole number of days"),
        ("SOURCE_SILENCE_HOURS", "SignInLog=2", "SOURCE_SILENCE_HOURS names 'SignInLog'; watched tables are"),
        ("SOURCE_SILENCE_HOURS", "AzureActivity=25", "hours must be between 0 (not watched) and 24"),
        ("SOURCE_SILENCE_HOURS", "AzureActivity:6", "write Table=hours"),
        ("SOURCE_SILENT_FAILED_TICKS", "0", "SOURCE_SILENT_FAILED_TICKS is 0; it must be between 1 and 288"),
        ("SOURCE_SILENT_FAILED_TICKS", "three", "not a whole number of ticks"),
        ("BREAK_GLASS_ACCOUNTS", None, "BREAK_GLASS_ACCOUNTS is missing"),
        ("BREAK_GLASS_ACCOUNTS", ",,", "BREAK_GLASS_ACCOUNTS lists no account"),
        ("BREAK_GLASS_ACCOUNTS", " ;, ", "BREAK_GLASS_ACCOUNTS lists no account"),
        ("BREAK_GLASS_ACCOUNTS", "none, bg@contoso.com", "BREAK_GLASS_ACCOUNTS has none among accounts"),
        ("TEAMS_WEBHOOK_URL", None, "TEAMS_WEBHOOK_URL is missing"),
        ("TEAMS_WEBHOOK_URL", "  ", "TEAMS_WEBHOOK_URL is missing"),
        ("TEAMS_WEBHOOK_URL", KEY_VAULT_REFERENCE, "TEAMS_WEBHOOK_URL is an unresolved Key Vault reference"),
        ("HISTORY_BASE_URL", KEY_VAULT_REFERENCE, "HISTORY_BASE_URL is an unresolved Key Vault reference"),
    ],
)
def test_each_bad_setting_is_named_with_a_fix(name: str, value: str | None, expected: str) -> None:
    found = problems(**{name: value})
    assert len(found) == 1
    assert expected in found[0]
    assert name in found[0]


def test_break_glass_accounts_and_the_webhook_are_required_and_the_fix_says_none_opts_out() -> None:
    found = problems(BREAK_GLASS_ACCOUNTS=None, TEAMS_WEBHOOK_URL=None)
    assert [p.split()[0] for p in found] == ["TEAMS_WEBHOOK_URL", "BREAK_GLASS_ACCOUNTS"]
    assert "or none" in found[0]
    assert "or none" in found[1]


@pytest.mark.parametrize("value", ["none", "None", " NONE "])
def test_none_watches_no_break_glass_account_and_says_so(value: str) -> None:
    settings = load_settings({**VALID, "BREAK_GLASS_ACCOUNTS": value})
    assert not settings.break_glass
    (warning,) = settings.warnings
    assert warning.startswith("No break-glass account is watched")
    assert "BREAK_GLASS_ACCOUNTS" in warning


@pytest.mark.parametrize("value", ["none", "NONE"])
def test_none_keeps_alerts_in_the_history_only_and_says_so(value: str) -> None:
    settings = load_settings({**VALID, "TEAMS_WEBHOOK_URL": value})
    assert settings.webhooks == ()
    (warning,) = settings.warnings
    assert warning.startswith("Alerts are not posted to Teams")
    assert "TEAMS_WEBHOOK_URL" in warning


def test_a_complete_configuration_has_no_warning() -> None:
    assert load_settings(VALID).warnings == ()


def test_no_webhook_cannot_come_with_another_webhook() -> None:
    (found,) = problems(
        TEAMS_WEBHOOK_URL="none", TEAMS_WEBHOOK_URL_2="https://x.logic.azure.com/wf?sig=SECRET123"
    )
    assert found.startswith("TEAMS_WEBHOOK_URL_2 is set but TEAMS_WEBHOOK_URL is none")
    assert "SECRET123" not in found


def test_no_webhook_keeps_the_minimum_severity_infra_always_sets() -> None:
    settings = load_settings({**VALID, "TEAMS_WEBHOOK_URL": "none", "TEAMS_WEBHOOK_MIN_SEVERITY": "low"})
    assert settings.webhooks == ()


@pytest.mark.parametrize(
    "name",
    ["TEAMS_WEBHOOK_URL_6", "TEAMS_WEBHOOK_URL_1", "TEAMS_WEBHOOK_URL_X", "TEAMS_WEBHOOK_URL2",
     "TEAMS_WEBHOOK_MIN_SEVERITY_6", "TEAMS_WEBHOOK_MIN_SEVERITY_0"],
)  # fmt: skip
def test_a_webhook_setting_the_monitor_does_not_read_is_refused(name: str) -> None:
    (found,) = problems(**{name: "https://x.logic.azure.com/wf?sig=SECRET123"})
    assert found.startswith(f"{name} is not a setting the monitor reads")
    assert "TEAMS_WEBHOOK_URL_2" in found  # the names it does read
    assert f"_{MAX_EXTRA_WEBHOOKS}" in found
    assert "SECRET123" not in found


def test_an_empty_unknown_webhook_setting_configures_nothing_and_is_ignored() -> None:
    assert len(load_settings({**VALID, "TEAMS_WEBHOOK_URL_6": ""}).webhooks) == 1


@pytest.mark.parametrize(
    "schedule",
    [
        "0 */5 * * * *",
        "0 */1 * * * *",
        "0 * * * * *",
        "0 0,15,30,45 * * * *",
        "30 */15 * * * *",
        "0 5-59/10 * * * *",  # 5, 15, ..., 55: 10 minutes apart, also across the hour
        "0 */7 * * * *",  # 0, 7, ..., 56: the gap across the hour is 4
        "0 0-59/5 */1 * * *",
        "0 3,10,17,24,31,38,45,52,59 * * * *",
        " 0  */5 * * * * ",
    ],
)
def test_schedules_that_tick_every_1_to_15_minutes_are_accepted(schedule: str) -> None:
    assert load_settings({**VALID, "MONITOR_SCHEDULE": schedule}).schedule == schedule.strip()


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("* * * * * *", "runs more than once a minute"),
        ("*/10 * * * * *", "runs more than once a minute"),
        ("0,30 */5 * * * *", "runs more than once a minute"),
        ("0 0 * * * *", "leaves 60 minutes between ticks"),
        ("0 */20 * * * *", "leaves 20 minutes between ticks"),
        ("0 0,15,30 * * * *", "leaves 30 minutes between ticks"),
        ("0 10-50/5 * * * *", "leaves 20 minutes between ticks"),  # 50 to 10 past the next hour
        ("0 0 0 * * *", "runs only in some hours"),  # daily
        ("0 0 0 1 1 *", "runs only in some hours"),  # yearly
        ("0 */5 8-18 * * *", "runs only in some hours; its hour field must be *"),
        ("0 */5 * 1-15 * *", "runs only on some days of the month"),
        ("0 */5 * * 1-6 *", "runs only in some months"),
        ("0 */5 * * * 1-5", "runs only on some days of the week"),
        ("0 */5 * * * MON-FRI", "is not an NCRONTAB expression"),
        ("0 */0 * * * *", "is not an NCRONTAB expression"),
        ("0 61 * * * *", "is not an NCRONTAB expression"),
        ("0 30-10 * * * *", "is not an NCRONTAB expression"),
        ("0 +5/5 * * * *", "is not an NCRONTAB expression"),
        ("0 */5_0 * * * *", "is not an NCRONTAB expression"),
        ("0 0-59/ * * * *", "is not an NCRONTAB expression"),
        ("0 */5 * * *", "is not six NCRONTAB fields"),
        ("00:05:00", "is not six NCRONTAB fields"),
    ],
)
def test_schedules_outside_every_1_to_15_minutes_are_refused(schedule: str, expected: str) -> None:
    (found,) = problems(MONITOR_SCHEDULE=schedule)
    assert found.startswith(f"MONITOR_SCHEDULE is {schedule!r}")
    assert expected in found
    assert "every 1 to 15 minutes" in found  # the rule, in the hint


def test_all_problems_are_reported_at_once() -> None:
    found = problems(LOG_ANALYTICS_WORKSPACE_ID="x", STATE_TABLE_ENDPOINT=None, MONITOR_SCHEDULE="bad")
    assert [p.split()[0] for p in found] == [
        "LOG_ANALYTICS_WORKSPACE_ID",
        "STATE_TABLE_ENDPOINT",
        "MONITOR_SCHEDULE",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://abc.environment.api.powerplatform.com/x?sig=SECRET123",
        "https://evil.example.com/x?sig=SECRET123",
        "https://user:SECRET123@abc.logic.azure.com/x",
    ],
)
def test_webhook_url_must_be_https_on_an_allowed_host_and_is_never_echoed(url: str) -> None:
    found = problems(TEAMS_WEBHOOK_URL=url)
    assert len(found) == 1
    assert found[0].startswith("TEAMS_WEBHOOK_URL ")
    assert "SECRET123" not in str(found)


def test_an_unresolved_key_vault_reference_says_where_to_look_and_is_not_echoed() -> None:
    (found,) = problems(TEAMS_WEBHOOK_URL=KEY_VAULT_REFERENCE.upper())
    assert "Key Vault Secrets User" in found
    assert "restart the app" in found
    assert "KV-MFAMON" not in found.upper()


def test_allowed_hosts_are_configurable() -> None:
    settings = load_settings(
        {
            **VALID,
            "TEAMS_WEBHOOK_URL": "https://127.0.0.1:8443/webhook/a?sig=s",
            "TEAMS_ALLOWED_HOSTS": "127.0.0.1",
        }
    )
    assert settings.webhooks[0].host == "127.0.0.1"


def test_several_webhooks_each_with_a_minimum_severity() -> None:
    settings = load_settings(
        {
            **VALID,
            "TEAMS_WEBHOOK_URL_2": "https://x.logic.azure.com/wf?sig=s2",
            "TEAMS_WEBHOOK_MIN_SEVERITY_2": "Critical",
        }
    )
    assert [(w.name, w.min_severity) for w in settings.webhooks] == [
        ("teams_1", Severity.LOW),
        ("teams_2", Severity.CRITICAL),
    ]


def test_severity_without_url_is_an_error() -> None:
    assert "TEAMS_WEBHOOK_URL_3 is not" in problems(TEAMS_WEBHOOK_MIN_SEVERITY_3="high")[0]


def test_webhook_url_is_hidden_from_repr() -> None:
    assert "SECRET123" not in repr(load_settings(VALID))


def test_waiver_limits_default_and_can_be_set() -> None:
    defaults = load_settings(VALID)
    assert (defaults.waiver_max_days, defaults.waiver_reminder_days) == (180, 7)
    custom = load_settings({**VALID, "WAIVER_MAX_DAYS": "90", "WAIVER_REMINDER_DAYS": "0"})
    assert (custom.waiver_max_days, custom.waiver_reminder_days) == (90, 0)


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("easy-auth", "easy-auth"),
        ("Easy-Auth", "easy-auth"),
        ("function-key", "function-key"),
        ("", "function-key"),
    ],
)
def test_history_auth_selects_who_is_trusted(raw: str, mode: str) -> None:
    # Only "easy-auth" makes the app trust X-MS-CLIENT-PRINCIPAL-NAME (docs/oncall.md).
    assert load_settings({**VALID, "HISTORY_AUTH": raw}).history_auth == mode


def test_detections_are_switched_off_by_id() -> None:
    from monitors.detections import DETECTIONS, enabled

    assert load_settings(VALID).disabled_detections == frozenset()
    settings = load_settings({**VALID, "DISABLED_DETECTIONS": " User-ARM-Write ; "})
    assert settings.disabled_detections == {"user-arm-write"}
    running = [d.id for d in enabled(settings.disabled_detections)]
    assert running == [d.id for d in DETECTIONS if d.id != "user-arm-write"]
    assert "break-glass-use" in running


def test_blindness_settings_default_and_parse() -> None:
    settings = load_settings(VALID)
    assert settings.break_glass_drill_days == 90
    assert dict(settings.source_silence_hours) == {
        "SigninLogs": 2,
        "AADNonInteractiveUserSignInLogs": 2,
        "AzureActivity": 6,
        "AuditLogs": 24,
    }
    assert settings.source_silent_failed_ticks == 3
    tuned = load_settings(
        {
            **VALID,
            "BREAK_GLASS_DRILL_DAYS": "30",
            "SOURCE_SILENCE_HOURS": "azureactivity=12; AADNonInteractiveUserSignInLogs=0",
            "SOURCE_SILENT_FAILED_TICKS": "6",
        }
    )
    assert tuned.break_glass_drill_days == 30
    # Tables left out keep their default; 0 means the table is not watched.
    assert dict(tuned.source_silence_hours) == {
        "SigninLogs": 2,
        "AADNonInteractiveUserSignInLogs": 0,
        "AzureActivity": 12,
        "AuditLogs": 24,
    }
    assert tuned.source_silent_failed_ticks == 6


def test_break_glass_groups_are_object_ids_and_optional() -> None:
    assert load_settings(VALID).break_glass_groups == frozenset()
    assert load_settings({**VALID, "BREAK_GLASS_GROUPS": "none"}).break_glass_groups == frozenset()
    group = "3C1F0A9E-6D2B-4F7A-8E5C-1B2D3E4F5A6B"
    settings = load_settings({**VALID, "BREAK_GLASS_GROUPS": f"{group}; {group.lower()}"})
    assert settings.break_glass_groups == {group.lower()}


def test_every_detection_but_those_always_on_can_be_switched_off() -> None:
    from monitors.detections import enabled

    new = ("break-glass-weak-method", "user-service-account", "mfa-blocked-automation",
           "ropc-sign-in", "guest-arm-write", "policy-mfa-audit")  # fmt: skip
    settings = load_settings({**VALID, "DISABLED_DETECTIONS": ",".join(new)})
    assert settings.disabled_detections == set(new)
    assert [d.id for d in enabled(settings.disabled_detections)] == [
        "user-arm-write", "break-glass-use", "break-glass-account-changed", "source-silent"
    ]  # fmt: skip
