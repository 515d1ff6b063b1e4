"""The read side for on-call, pure: filters from query parameters, alerts as JSON, status rules.

The web page (monitors/web.py), the JSON API and the CLI (monitors/cli_alerts.py) share these,
so a filter means the same everywhere and is validated the same way. No I/O and no HTTP types.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from monitors import alerts
from monitors.history_store import MAX_PAGE, STATUSES, HistoryQuery
from monitors.model import Alert, Severity

ALERT_ID = re.compile(r"^\d{13}-[0-9a-f]{12}$")
DEFAULT_LIMIT = 50
MAX_PRINCIPAL_CHARS = 256  # a guest UPN with #EXT# stays well below
MAX_NAME_CHARS = 100  # who acknowledged or resolved
MAX_NOTE_CHARS = 2000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # alert ids hold 13 digits of inverted milliseconds
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
FILTER_NAMES = ("detection", "severity", "status", "principal", "since", "until")
PAGING_NAMES = ("after", "limit")
SEVERITIES = tuple(s.value for s in Severity)
# Which changes on-call may make from each status. A resolved alert stays resolved: a new
# occurrence is a new alert.
TRANSITIONS = {
    "new": ("acknowledged", "resolved"),
    "waived": ("acknowledged", "resolved"),
    "acknowledged": ("resolved",),
    "resolved": (),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


class FilterError(ValueError):
    """Query parameters that cannot be used; each problem names the parameter, never its value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """Validated filters and paging, plus their text as given (for forms and links)."""

    detection: str | None = None
    severity: str | None = None
    status: str | None = None
    principal: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    since_text: str = ""
    until_text: str = ""
    after: str | None = None
    limit: int = DEFAULT_LIMIT

    def query(self) -> HistoryQuery:
        return HistoryQuery(
            detection=self.detection, severity=self.severity, status=self.status, principal=self.principal,
            since=self.since, until=self.until, after=self.after, limit=self.limit,
        )  # fmt: skip

    def params(self, *, after: str | None = None, keep_limit: bool = True) -> dict[str, str]:
        """The non-empty filters as query parameters (the page's links carry them)."""
        values = {
            "detection": self.detection, "severity": self.severity, "status": self.status,
            "principal": self.principal, "since": self.since_text, "until": self.until_text,
            "after": after, "limit": str(self.limit) if keep_limit and self.limit != DEFAULT_LIMIT else None,
        }  # fmt: skip
        return {name: value for name, value in values.items() if value}

    @property
    def active(self) -> bool:
        return any((self.detection, self.severity, self.status, self.principal, self.since, self.until))

    def as_json(self) -> dict[str, Any]:
        return {
            "detection": self.detection, "severity": self.severity, "status": self.status,
            "principal": self.principal,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "limit": self.limit,
        }  # fmt: skip


def parse_filters(
    params: Mapping[str, str], detections: Collection[str], *, allowed: Collection[str] = ()
) -> Filters:
    """Filters from query parameters (or CLI options); raise FilterError listing every problem.

    An empty value means "any" (what an HTML form sends for an unselected filter). Parameter
    names outside FILTER_NAMES, PAGING_NAMES and `allowed` are refused: a misspelt filter must
    not silently show everything.
    """
    problems: list[str] = []
    known = {*FILTER_NAMES, *PAGING_NAMES, *allowed}
    unknown = sorted(name for name in params if name not in known)
    if unknown:
        problems.append(
            f"unknown parameter {_shown(unknown[0])}; use {', '.join([*FILTER_NAMES, *PAGING_NAMES])}"
        )
    values = {name: (params.get(name) or "").strip() for name in (*FILTER_NAMES, *PAGING_NAMES)}

    def one_of(name: str, choices: Collection[str]) -> str | None:
        value = values[name].lower()
        if value and value not in choices:
            problems.append(f"{name} must be one of {', '.join(choices)}")
            return None
        return value or None

    principal = values["principal"] or None
    if principal is not None and (len(principal) > MAX_PRINCIPAL_CHARS or _has_controls(principal)):
        problems.append(f"principal must be an object id or UPN of at most {MAX_PRINCIPAL_CHARS} characters")
        principal = None
    since = _moment(values["since"], "since", problems, end_of_day=False)
    until = _moment(values["until"], "until", problems, end_of_day=True)
    if since and until and since > until:
        problems.append("since must not be later than until")
    after = values["after"] or None
    if after is not None and not ALERT_ID.match(after):
        problems.append("after must be an alert id from the previous page")
        after = None
    limit = DEFAULT_LIMIT
    if values["limit"]:
        if values["limit"].isdigit() and 1 <= int(values["limit"]) <= MAX_PAGE:
            limit = int(values["limit"])
        else:
            problems.append(f"limit must be a whole number from 1 to {MAX_PAGE}")
    filters = Filters(
        detection=one_of("detection", tuple(detections)),
        severity=one_of("severity", SEVERITIES),
        status=one_of("status", STATUSES),
        principal=principal,
        since=since,
        until=until,
        since_text=values["since"] if since else "",
        until_text=values["until"] if until else "",
        after=after,
        limit=limit,
    )
    if problems:
        raise FilterError(problems)
    return filters


def _moment(raw: str, name: str, problems: list[str], *, end_of_day: bool) -> datetime | None:
    """ISO 8601 date or date-time; without an offset it is UTC. A bare `until` date includes that day."""
    if not raw:
        return None
    try:
        if _DATE.match(raw):
            day = date.fromisoformat(raw)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            if end_of_day:
                moment += timedelta(days=1) - timedelta(milliseconds=1)
        else:
            moment = datetime.fromisoformat(raw)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        problems.append(f"{name} must be an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T08:00Z")
        return None
    if not EARLIEST <= moment < LATEST:
        problems.append(f"{name} must lie between 2000 and 2199")
        return None
    return moment


# --------------------------------------------------------------------------- people's input


class InputError(ValueError):
    """A form field or CLI option on-call filled in cannot be used."""


def clean_name(value: str, what: str = "name") -> str:
    """Who acted: one line, printable, 1 to MAX_NAME_CHARS characters."""
    text = " ".join(value.split())
    if not text:
        raise InputError(f"{what} is required")
    if len(text) > MAX_NAME_CHARS or _has_controls(text):
        raise InputError(f"{what} must be printable text of at most {MAX_NAME_CHARS} characters")
    return text


def clean_note(value: str, *, required: bool) -> str:
    """The note: line breaks kept, other control and invisible characters refused."""
    text = "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").strip().split("\n"))
    if required and not text:
        raise InputError("a note is required to resolve an alert: say what was found and done")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"the note is {len(text)} characters; at most {MAX_NOTE_CHARS}")
    if _has_controls(text.replace("\n", "")):
        raise InputError("the note contains control or invisible characters")
    return text


def check_transition(current: str, target: str) -> None:
    """Raise InputError when on-call may not move an alert from `current` to `target`."""
    if target not in ("acknowledged", "resolved"):
        raise InputError("the action must be acknowledge or resolve")
    if target not in TRANSITIONS.get(current, ()):
        raise InputError(f"the alert is {current}; it cannot be {target} now")


def status_for(action: str) -> str:
    statuses = {"acknowledge": "acknowledged", "ack": "acknowledged", "resolve": "resolved"}
    if action not in statuses:
        raise InputError("the action must be acknowledge or resolve")
    return statuses[action]


# --------------------------------------------------------------------------- JSON


def summary_json(entity: Mapping[str, Any]) -> dict[str, Any]:
    """One alert as the list shows it (index rows and the main row both have these columns)."""
    return {
        "alert_id": entity["RowKey"],
        "created_at": _utc(entity["CreatedAt"]).isoformat(),
        "detection": entity["Detection"],
        "severity": entity["Severity"],
        "principal": entity["Principal"],
        "headline": entity["Headline"],
        "events": entity["EventCount"],
        "status": entity["Status"],
        "delivery": entity["Delivery"],
        "delivery_attempts": entity["DeliveryAttempts"],
        "last_delivery_error": entity.get("LastDeliveryError") or None,
        "waiver": entity.get("Waiver") or None,
    }


def detail_json(entity: Mapping[str, Any], alert: Alert) -> dict[str, Any]:
    delivered_at = entity.get("DeliveredAt")
    return {
        **summary_json(entity),
        "delivered_at": _utc(delivered_at).isoformat() if isinstance(delivered_at, datetime) else None,
        "delivery_log": delivery_log(entity),
        "status_history": status_history(entity),
        "alert": alerts.to_json(alert),
    }


def status_history(entity: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _json_list(entity.get("StatusHistory"))


def delivery_log(entity: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _json_list(entity.get("DeliveryLog"))


def _json_list(text: Any) -> list[dict[str, Any]]:
    try:
        value = json.loads(text or "[]")
    except (TypeError, ValueError):
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _has_controls(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text)


def _shown(name: str) -> str:
    """A parameter name for an error message: bounded and printable (the page escapes it too)."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name[:40])
    return repr(cleaned)
