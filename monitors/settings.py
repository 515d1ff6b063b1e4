"""Every app setting the monitor reads, typed and validated in one place.

A bad value raises one SettingsError that names each offending setting and how to fix it,
instead of a stack trace at 3 a.m. deep inside a tick. function_app.py loads the settings when
a function first runs (never at import: the functions must index whatever the settings say)
and shows these messages in the log and on the history page. Secret values (webhook URLs)
never appear in messages or reprs.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from monitors.model import Severity

PUBLIC_LOG_ANALYTICS = "https://api.loganalytics.io"
DEFAULT_ALLOWED_WEBHOOK_HOSTS = ("*.environment.api.powerplatform.com", "*.logic.azure.com")
MAX_EXTRA_WEBHOOKS = 5
# The explicit "deliberately nothing" of BREAK_GLASS_ACCOUNTS and TEAMS_WEBHOOK_URL: both are
# required, so that leaving one empty by mistake is refused instead of silently watching nothing.
NONE = "none"
# Longest gap between two ticks MONITOR_SCHEDULE may leave: break-glass use must reach on-call
# within minutes, and slower ticks only delay every alert.
MAX_TICK_GAP_MINUTES = 15
# Who may use the history page and how the person acting on an alert is known:
# "function-key": a function key opens it; the person types their name (nobody verifies it).
# "easy-auth": App Service Authentication (Entra ID) is in front; its X-MS-CLIENT-PRINCIPAL-NAME
# header names the person. Only trusted in this mode: without Easy Auth anyone can send it.
HISTORY_AUTH_MODES = ("function-key", "easy-auth")

_UPN = re.compile(r"^[A-Za-z0-9._%+'#-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,40}$")
_WEBHOOK_SETTING = re.compile(r"^TEAMS_WEBHOOK_(?:URL|MIN_SEVERITY)(.*)$")

T = TypeVar("T")


class SettingsError(Exception):
    """Settings refused: one line per bad setting, each naming the fix (never a value)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "The monitor cannot run; fix these app settings:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """A Teams Workflows webhook. The URL carries a signature: it is a secret."""

    name: str
    url: str = field(repr=False)
    min_severity: Severity

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlassAccounts:
    object_ids: frozenset[str] = frozenset()
    upns: frozenset[str] = frozenset()  # lower-cased

    def __bool__(self) -> bool:
        return bool(self.object_ids or self.upns)


# The tables the monitor reads, and how long each may stay silent before source-silent says the
# monitor is blind. Entra sign-ins land in about 2 min (P99 5), the Activity Log in 3-20 min;
# a busy tenant writes to each every few minutes, a quiet one may not write to ARM for hours.
# AuditLogs (directory changes) can be quiet for most of a day in a small tenant.
WATCHED_TABLES = ("SigninLogs", "AADNonInteractiveUserSignInLogs", "AzureActivity", "AuditLogs")
DEFAULT_SILENCE_HOURS = (
    ("SigninLogs", 2),
    ("AADNonInteractiveUserSignInLogs", 2),
    ("AzureActivity", 6),
    ("AuditLogs", 24),
)
MAX_SILENCE_HOURS = 24  # below the late-arrival lookback (48 h at least), so the last row stays in view


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    workspace_id: str
    log_analytics_endpoint: str
    log_analytics_audience: str
    table_endpoint: str
    table_prefix: str
    webhooks: tuple[Webhook, ...]
    allowed_webhook_hosts: tuple[str, ...]
    break_glass: BreakGlassAccounts
    schedule: str
    history_base_url: str | None
    history_auth: str = "function-key"
    portal_url: str
    managed_identity_client_id: str | None
    late_arrival_hours: int
    waiver_max_days: int = 180
    waiver_reminder_days: int = 7
    disabled_detections: frozenset[str] = frozenset()
    break_glass_drill_days: int = 90
    # groups the emergency accounts are members of (a Conditional Access exclusion group): a
    # policy change that includes or excludes one is a change to the accounts' access
    break_glass_groups: frozenset[str] = frozenset()
    source_silence_hours: tuple[tuple[str, int], ...] = DEFAULT_SILENCE_HOURS  # 0: not watched
    source_silent_failed_ticks: int = 3

    @property
    def warnings(self) -> tuple[str, ...]:
        """What these settings deliberately leave out (a `none`); the history page shows each."""
        found = []
        if not self.break_glass:
            found.append(
                "No break-glass account is watched: BREAK_GLASS_ACCOUNTS is none, so break-glass-use and "
                "break-glass-weak-method never fire. List the emergency-access accounts' object ids there."
            )
        if not self.webhooks:
            found.append(
                "Alerts are not posted to Teams: TEAMS_WEBHOOK_URL is none, so this history is the only "
                "place they appear. Set it to a Teams Workflows webhook to be told."
            )
        return tuple(found)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate every setting; raise SettingsError listing all problems at once."""
    problems: list[str] = []

    def read(name: str, parse: Callable[[str], T], default: T | None = None, required: bool = False) -> T:
        raw = env.get(name, "").strip()
        if not raw:
            if required:
                problems.append(f"{name} is missing. {_HINTS[name]}")
            return default  # type: ignore[return-value]
        if unresolved_reference(raw):
            problems.append(f"{name} {UNRESOLVED_REFERENCE}")
            return default  # type: ignore[return-value]
        try:
            return parse(raw)
        except ValueError as error:
            problems.append(f"{name} {error}. {_HINTS[name]}")
            return default  # type: ignore[return-value]

    endpoint = read("LOG_ANALYTICS_ENDPOINT", _https_url, PUBLIC_LOG_ANALYTICS)
    allowed_hosts = read("TEAMS_ALLOWED_HOSTS", _host_patterns, DEFAULT_ALLOWED_WEBHOOK_HOSTS)
    settings = Settings(
        workspace_id=read("LOG_ANALYTICS_WORKSPACE_ID", _guid, "", required=True),
        log_analytics_endpoint=endpoint,
        log_analytics_audience=read("LOG_ANALYTICS_AUDIENCE", _https_url, endpoint),
        table_endpoint=read("STATE_TABLE_ENDPOINT", _https_url, "", required=True),
        table_prefix=read("STATE_TABLE_PREFIX", _table_prefix, "mfamon"),
        webhooks=_read_webhooks(env, allowed_hosts, problems),
        allowed_webhook_hosts=allowed_hosts,
        break_glass=read("BREAK_GLASS_ACCOUNTS", _break_glass_setting, BreakGlassAccounts(), required=True),
        schedule=read("MONITOR_SCHEDULE", _schedule, "", required=True),
        history_base_url=read("HISTORY_BASE_URL", _https_url, None),
        history_auth=read("HISTORY_AUTH", _history_auth, "function-key"),
        portal_url=read("AZURE_PORTAL_URL", _https_url, "https://portal.azure.com"),
        managed_identity_client_id=read("AZURE_CLIENT_ID", _guid, None),
        late_arrival_hours=read("LATE_ARRIVAL_HOURS", _late_arrival_hours, 48),
        waiver_max_days=read("WAIVER_MAX_DAYS", _waiver_max_days, 180),
        waiver_reminder_days=read("WAIVER_REMINDER_DAYS", _waiver_reminder_days, 7),
        disabled_detections=read("DISABLED_DETECTIONS", _detection_ids, frozenset()),
        break_glass_drill_days=read("BREAK_GLASS_DRILL_DAYS", _drill_days, 90),
        break_glass_groups=read("BREAK_GLASS_GROUPS", parse_group_ids, frozenset()),
        source_silence_hours=read("SOURCE_SILENCE_HOURS", parse_silence_hours, DEFAULT_SILENCE_HOURS),
        source_silent_failed_ticks=read("SOURCE_SILENT_FAILED_TICKS", _failed_ticks, 3),
    )
    if problems:
        raise SettingsError(problems)
    return settings


def _read_webhooks(
    env: Mapping[str, str], allowed_hosts: tuple[str, ...], problems: list[str]
) -> tuple[Webhook, ...]:
    suffixes = [""] + [f"_{n}" for n in range(2, MAX_EXTRA_WEBHOOKS + 1)]
    # A name the loop below does not read (TEAMS_WEBHOOK_URL_6, a typo) would be a channel that
    # silently never gets an alert.
    for name in sorted(env):
        unread = _WEBHOOK_SETTING.match(name)
        if unread and unread.group(1) not in suffixes and env[name].strip():
            problems.append(
                f"{name} is not a setting the monitor reads. Webhooks are TEAMS_WEBHOOK_URL, then "
                f"TEAMS_WEBHOOK_URL_2 to _{MAX_EXTRA_WEBHOOKS}, each with the TEAMS_WEBHOOK_MIN_SEVERITY "
                "of the same suffix; rename or remove it."
            )
    first = env.get("TEAMS_WEBHOOK_URL", "").strip()
    if not first:
        problems.append(f"TEAMS_WEBHOOK_URL is missing. {_HINTS['TEAMS_WEBHOOK_URL']}")
    no_teams = first.lower() == NONE
    webhooks = []
    for suffix in suffixes:
        url_name, severity_name = f"TEAMS_WEBHOOK_URL{suffix}", f"TEAMS_WEBHOOK_MIN_SEVERITY{suffix}"
        url = env.get(url_name, "").strip()
        if no_teams and not suffix:
            continue  # its minimum severity may stay (infra/ always sets one): it filters nothing
        if url and no_teams:
            problems.append(
                f"{url_name} is set but TEAMS_WEBHOOK_URL is none (no Teams channel). Remove it, or put "
                "the first webhook in TEAMS_WEBHOOK_URL."
            )
            continue
        if not url:
            if env.get(severity_name, "").strip():
                problems.append(f"{severity_name} is set but {url_name} is not. Set both or neither.")
            continue
        if unresolved_reference(url):
            problems.append(f"{url_name} {UNRESOLVED_REFERENCE}")
            continue
        try:
            _webhook_url(url, allowed_hosts)
        except ValueError as error:
            problems.append(f"{url_name} {error}. {_HINTS['TEAMS_WEBHOOK_URL']}")
            continue
        raw_severity = env.get(severity_name, "").strip() or Severity.LOW.value
        try:
            severity = Severity(raw_severity.lower())
        except ValueError:
            problems.append(f"{severity_name} is {raw_severity!r}; use one of low, medium, high, critical.")
            continue
        webhooks.append(Webhook(name=f"teams{suffix or '_1'}", url=url, min_severity=severity))
    return tuple(webhooks)


# App Service resolves `@Microsoft.KeyVault(...)` app settings before the app starts; when it
# cannot (the identity's role is not there yet, a secret deleted or renamed) it leaves the
# reference's text in the variable. Said apart from a bad value: the fix is in Azure, not here.
UNRESOLVED_REFERENCE = (
    "is an unresolved Key Vault reference: App Service could not read the secret. Check that the "
    "app's identity has Key Vault Secrets User on the secret and that the secret exists (role "
    "assignments take minutes to apply), then restart the app."
)


def unresolved_reference(raw: str) -> bool:
    """The text App Service leaves in a setting whose Key Vault reference it could not resolve."""
    return raw[:20].lower() == "@microsoft.keyvault("


def _guid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ValueError(f"is {raw!r}, not a GUID") from None


def _https_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"is {raw!r}, not an https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    return raw.rstrip("/")


def _webhook_url(raw: str, allowed_hosts: tuple[str, ...]) -> str:
    # Never echo the URL: its query string holds the webhook's signature.
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("is not an https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    host = parts.hostname.lower()
    if not any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed_hosts):
        raise ValueError(f"points to host {host!r}, which is not in TEAMS_ALLOWED_HOSTS")
    return raw


def _host_patterns(raw: str) -> tuple[str, ...]:
    patterns = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    for pattern in patterns:
        if not re.fullmatch(r"(\*\.)?[a-z0-9.-]+", pattern):
            raise ValueError(f"has {pattern!r}, not a host name or *.domain pattern")
    return patterns


def parse_break_glass(raw: str) -> BreakGlassAccounts:
    """Object ids and/or UPNs separated by commas, semicolons or spaces."""
    object_ids, upns = set(), set()
    for item in re.split(r"[,;\s]+", raw):
        if not item:
            continue
        try:
            object_ids.add(str(uuid.UUID(item)))
        except ValueError:
            if not _UPN.match(item):
                raise ValueError(f"has {item!r}, neither an object id (GUID) nor a UPN") from None
            upns.add(item.lower())
    return BreakGlassAccounts(object_ids=frozenset(object_ids), upns=frozenset(upns))


def _break_glass_setting(raw: str) -> BreakGlassAccounts:
    if raw.lower() == NONE:
        return BreakGlassAccounts()
    if NONE in (item.lower() for item in re.split(r"[,;\s]+", raw)):
        raise ValueError(f"has {NONE} among accounts; {NONE} alone means no account is watched")
    accounts = parse_break_glass(raw)
    if not accounts:
        raise ValueError("lists no account")
    return accounts


# The six NCRONTAB fields and the values each may take.
_CRON_FIELDS = (
    ("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23),
    ("day", 1, 31), ("month", 1, 12), ("day-of-week", 0, 6),
)  # fmt: skip
_CRON_PLACES = {"hour": "in some hours", "day": "on some days of the month", "month": "in some months",
                "day-of-week": "on some days of the week"}  # fmt: skip


def _cron_values(field: str, low: int, high: int) -> set[int]:
    """The values one NCRONTAB field matches: `*`, `n`, `a-b`, each with an optional `/step`, comma-listed.

    Names (MON, JAN) are refused: a schedule that must run every day says it with `*`.
    """
    values: set[int] = set()
    for part in field.split(","):
        spec, slash, step_text = part.partition("/")
        if spec == "*":
            start, end = low, high
        else:
            first, dash, last = spec.partition("-")
            start = _cron_number(first)
            end = _cron_number(last) if dash else (high if slash else start)  # `5/10`: from 5, every 10
        step = _cron_number(step_text) if slash else 1
        if not low <= start <= end <= high or step < 1:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return values


def _cron_number(text: str) -> int:
    # Digits only: int() would also take "+5", " 5" and "5_0", which the timer's parser may not.
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    return int(text)


def _schedule(raw: str) -> str:
    """Every 1 to MAX_TICK_GAP_MINUTES minutes, every hour of every day, once in each minute it runs."""
    fields = raw.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(f"is {raw!r}, which is not six NCRONTAB fields")
    try:
        sets = {
            name: _cron_values(f, low, high)
            for f, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True)
        }
    except ValueError:
        raise ValueError(f"is {raw!r}, which is not an NCRONTAB expression") from None
    if len(sets["second"]) != 1:  # ticks would overlap and queue behind the tick lease
        raise ValueError(
            f"is {raw!r}, which runs more than once a minute; its second field must be one number"
        )
    for name, low, high in _CRON_FIELDS[2:]:
        if len(sets[name]) != high - low + 1:
            raise ValueError(f"is {raw!r}, which runs only {_CRON_PLACES[name]}; its {name} field must be *")
    gap = tick_gap_minutes(raw)
    if gap > MAX_TICK_GAP_MINUTES:
        raise ValueError(f"is {raw!r}, which leaves {gap} minutes between ticks")
    return raw


def tick_gap_minutes(schedule: str) -> int:
    """The longest wait, in minutes, between two ticks of an NCRONTAB schedule's minute field."""
    minutes = sorted(_cron_values(schedule.split()[1], 0, 59))
    return max(b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 60], strict=True))


def _table_prefix(raw: str) -> str:
    if not _TABLE_PREFIX.match(raw):
        raise ValueError(f"is {raw!r}; table names must start with a letter and be alphanumeric")
    return raw


def _history_auth(raw: str) -> str:
    mode = raw.lower()
    if mode not in HISTORY_AUTH_MODES:
        raise ValueError(f"is {raw!r}; use function-key or easy-auth")
    return mode


def _late_arrival_hours(raw: str) -> int:
    try:
        hours = int(raw)
    except ValueError:
        raise ValueError(f"is {raw!r}, not a whole number of hours") from None
    if not 48 <= hours <= 24 * 14:
        raise ValueError(f"is {hours}; it must be between 48 (Activity Log can arrive that late) and 336")
    return hours


def _whole_days(raw: str, low: int, high: int, meaning: str) -> int:
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"is {raw!r}, not a whole number of days") from None
    if not low <= days <= high:
        raise ValueError(f"is {days}; it must be between {low} and {high} ({meaning})")
    return days


def _waiver_max_days(raw: str) -> int:
    return _whole_days(raw, 1, 365, "the longest a waiver may run before it is approved again")


def _waiver_reminder_days(raw: str) -> int:
    return _whole_days(raw, 0, 60, "days before a waiver ends that Teams is reminded; 0 for never")


def _drill_days(raw: str) -> int:
    return _whole_days(raw, 7, 365, "how long a break-glass account may go without a successful sign-in")


def parse_group_ids(raw: str) -> frozenset[str]:
    if raw.lower() == NONE:
        return frozenset()
    ids = set()
    for item in re.split(r"[,;\s]+", raw):
        if item:
            try:
                ids.add(str(uuid.UUID(item)))
            except ValueError:
                raise ValueError(f"has {item[:60]!r}, not a group object id (GUID)") from None
    return frozenset(ids)


def parse_silence_hours(raw: str) -> tuple[tuple[str, int], ...]:
    """`Table=hours` pairs separated by commas; tables left out keep their default, 0 stops watching one."""
    hours = dict(DEFAULT_SILENCE_HOURS)
    for item in (i.strip() for i in re.split(r"[,;]+", raw)):
        if not item:
            continue
        table, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"has {item[:80]!r}; write Table=hours, e.g. AzureActivity=6")
        known = {t.lower(): t for t in WATCHED_TABLES}
        if table.strip().lower() not in known:
            raise ValueError(f"names {table.strip()[:60]!r}; watched tables are {', '.join(WATCHED_TABLES)}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"has {item[:80]!r}; write Table=hours, e.g. AzureActivity=6") from None
        if not 0 <= number <= MAX_SILENCE_HOURS:
            raise ValueError(
                f"has {item[:80]!r}; hours must be between 0 (not watched) and {MAX_SILENCE_HOURS}"
            )
        hours[known[table.strip().lower()]] = number
    return tuple((t, hours[t]) for t in WATCHED_TABLES)


def _failed_ticks(raw: str) -> int:
    try:
        ticks = int(raw)
    except ValueError:
        raise ValueError(f"is {raw!r}, not a whole number of ticks") from None
    if not 1 <= ticks <= 288:
        raise ValueError(f"is {ticks}; it must be between 1 and 288 (a day of 5-minute ticks)")
    return ticks


# Break-glass use must never go unnoticed: no setting can switch it off (nor can a waiver), nor
# changes to the break-glass accounts (tampering comes before use). Nor source-silent, the
# monitor's watch over itself: without it failing queries, silent tables and unreadable seconds
# would alert nobody (a table not exported on purpose is set to 0 hours instead).
ALWAYS_ON_DETECTIONS = frozenset({"break-glass-use", "break-glass-account-changed", "source-silent"})


def _detection_ids(raw: str) -> frozenset[str]:
    from monitors.detections import DETECTIONS  # the catalogue imports this module

    known = {d.id for d in DETECTIONS}
    ids = frozenset(item for item in re.split(r"[,;\s]+", raw.lower()) if item)
    unknown = sorted(ids - known)
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"names {names}; known detections are {', '.join(sorted(known))}")
    refused = sorted(ids & ALWAYS_ON_DETECTIONS)
    if refused:
        raise ValueError(f"lists {', '.join(refused)}, which cannot be switched off")
    return ids


_HINTS = {
    "LOG_ANALYTICS_WORKSPACE_ID": "Use the workspace's Workspace ID (a GUID) from its Overview page.",
    "LOG_ANALYTICS_ENDPOINT": "Leave unset for public Azure; https://api.loganalytics.us for US Gov.",
    "LOG_ANALYTICS_AUDIENCE": "Leave unset to use LOG_ANALYTICS_ENDPOINT.",
    "STATE_TABLE_ENDPOINT": "Use https://<storage account>.table.core.windows.net.",
    "STATE_TABLE_PREFIX": "Leave unset for 'mfamon'.",
    "TEAMS_WEBHOOK_URL": (
        "Use the https URL of a Teams Workflows webhook, stored in Key Vault; or none to keep alerts in the "
        "alert history only (the history page then says so)."
    ),
    "TEAMS_ALLOWED_HOSTS": "Comma-separated hosts, e.g. *.environment.api.powerplatform.com.",
    "BREAK_GLASS_ACCOUNTS": (
        "List the emergency-access accounts' object ids (preferred) or UPNs, separated by commas; or none "
        "to watch no break-glass account (the history page then says so)."
    ),
    "MONITOR_SCHEDULE": (
        "It must tick every 1 to 15 minutes, all day: six NCRONTAB fields {second} {minute} {hour} {day} "
        "{month} {day-of-week} with one second, minutes at most 15 apart (also across the hour) and * for "
        "the rest, e.g. '0 */5 * * * *'. Slower ticks delay every alert; the timer trigger reads it too."
    ),
    "HISTORY_BASE_URL": "Use the Function App's https URL, or leave unset.",
    "HISTORY_AUTH": (
        "Leave unset (function-key) unless App Service Authentication with Entra ID is in front of the app "
        "(docs/oncall.md); then set easy-auth."
    ),
    "AZURE_PORTAL_URL": "Leave unset for public Azure; https://portal.azure.us for US Gov.",
    "AZURE_CLIENT_ID": "Use the client id of the user-assigned managed identity, or leave unset.",
    "LATE_ARRIVAL_HOURS": "Leave unset for 48.",
    "WAIVER_MAX_DAYS": "Leave unset for 180.",
    "WAIVER_REMINDER_DAYS": "Leave unset for 7; 0 turns expiry reminders off.",
    "DISABLED_DETECTIONS": "Leave unset to run every detection, or list detection ids separated by commas.",
    "BREAK_GLASS_DRILL_DAYS": "Leave unset for 90: the longest an emergency account may go untested.",
    "BREAK_GLASS_GROUPS": (
        "Leave unset (or none) if the emergency accounts are excluded from Conditional Access by object id; "
        "else list the object ids of the groups that exclude them, separated by commas."
    ),
    "SOURCE_SILENCE_HOURS": (
        "Leave unset for SigninLogs=2,AADNonInteractiveUserSignInLogs=2,AzureActivity=6,AuditLogs=24; "
        "0 stops watching a table (e.g. one the tenant does not export)."
    ),
    "SOURCE_SILENT_FAILED_TICKS": "Leave unset for 3 (ticks failing in a row before it says it is blind).",
}
