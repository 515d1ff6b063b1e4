"""What every detection declares, and the row readers they share.

A detection is data plus two pure functions: `parse` turns one query result row into a typed
observation (or raises RowError: the tick skips and counts it), `evaluate` turns a tick's
observations into findings. Its KQL lives in a `.kql` file beside it, checked by the Kusto
language service; its cases are raw log rows run through that KQL by the tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from monitors import kql
from monitors.detections.entra import STEP_UP_SETTLE
from monitors.model import Finding, Principal, Severity, alias_key
from monitors.settings import DEFAULT_SILENCE_HOURS, BreakGlassAccounts, Settings
from monitors.watermark import Window

Row = Mapping[str, Any]
T = TypeVar("T")
MAX_TEXT = 512  # log fields are attacker-influenced (user agents, names): bound what we keep


class RowError(ValueError):
    """A result row that cannot be trusted; skipped and counted, never fatal."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything outside the rows that a detection may consult; assembled by the shell."""

    break_glass: BreakGlassAccounts = field(default_factory=BreakGlassAccounts)
    break_glass_groups: frozenset[str] = frozenset()  # groups the accounts are in (BREAK_GLASS_GROUPS)
    # baseline keys that already alerted (dedupe="principal"): the principal's key, or
    # "principal|subject" for detections whose findings carry a subject (Finding.baseline_key)
    known_principals: frozenset[str] = frozenset()
    seen_event_ids: frozenset[str] = frozenset()  # events that already alerted (dedupe="event")
    drill_days: int = 90  # break-glass-weak-method: longest an emergency account may go untested
    # None: the drill lookback runs once a day (see drill_since); True/False force it (cases, replay).
    drill_check_due: bool | None = None
    silence_hours: tuple[tuple[str, int], ...] = DEFAULT_SILENCE_HOURS  # source-silent; 0: not watched
    # mfa-blocked-automation reads a silent refresh's step-up refusal this late, once the person's
    # answer has arrived; replay sets 0: an export holds every row it ever will.
    step_up_settle: timedelta = STEP_UP_SETTLE


def detection_context(settings: Settings) -> Context:
    """The context a tick gives every detection, from the validated settings."""
    return Context(
        break_glass=settings.break_glass,
        break_glass_groups=settings.break_glass_groups,
        drill_days=settings.break_glass_drill_days,
        silence_hours=settings.source_silence_hours,
    )


def drill_since(window: Window, context: Context) -> datetime:
    """Start of the break-glass drill lookback: `drill_days` back, once a day; else the window's end.

    The lookback reads weeks of sign-ins, so it runs only in the window that crosses a UTC
    midnight: windows follow each other without gaps, so exactly one a day does (a failed one is
    retried with the same window). An empty range (start = end) makes the query skip the part.
    """
    due = context.drill_check_due
    if due is None:
        due = window.start.date() != window.end.date()
    return window.end - timedelta(days=context.drill_days) if due else window.end


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    """One finding a case must produce: whom it is about and exactly which log rows it covers."""

    principal: str  # the finding's Principal.identity: the object id, else the lower-case UPN
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """Sample log rows (per table) and exactly the findings they must produce (none: must not fire)."""

    name: str
    rows: Mapping[str, Sequence[Mapping[str, Any]]]
    findings: tuple[Expect, ...]
    context: Context = Context()


def mismatches(case: Case, findings: Sequence[Finding]) -> list[str]:
    """How a detection's findings differ from what its case expects; empty when they agree.

    Compared as multisets of (principal, event ids): a finding for the wrong principal, a missing
    or extra event, or one finding too many or too few each show up as a difference.
    """
    got = sorted((f.principal.identity, tuple(sorted(f.event_ids))) for f in findings)
    want = sorted((e.principal, tuple(sorted(e.event_ids))) for e in case.findings)
    missing = [w for w in want if w not in got or want.count(w) > got.count(w)]
    extra = [g for g in got if g not in want or got.count(g) > want.count(g)]
    return [f"expected, not found: {m}" for m in dict.fromkeys(missing)] + [
        f"found, not expected: {x}" for x in dict.fromkeys(extra)
    ]


def one_key_per_user(observations: Sequence[T]) -> list[T]:
    """Observations whose principal has no object id take the one another observation of the same
    UPN carries, so one user has one baseline key: an Activity Log row without token claims names
    its user by Caller alone, and keyed by that UPN it would alert a second time. Observations
    that derive their principal (no `principal` field) are left as they are."""
    object_ids: dict[str, str] = {}
    for principal in filter(None, map(_principal_field, observations)):
        if principal.user_id and principal.user_principal_name:
            object_ids.setdefault(principal.user_principal_name.lower(), principal.user_id)
    resolved = []
    for o in observations:
        principal = _principal_field(o)
        upn = ((principal and principal.user_principal_name) or "").lower()
        if principal and not principal.user_id and upn in object_ids:
            o = replace(o, principal=replace(principal, user_id=object_ids[upn]))  # type: ignore[type-var]
        resolved.append(o)
    return resolved


def same_user_key(key_of: Callable[[Any], str], observation: Any) -> str | None:
    """The other baseline entry that says the observation's user already alerted, its own key
    `key_of` gives aside; None when there is none.

    A principal with an object id and a UPN: the plain key of its UPN form (Principal.upn_form),
    which an alert its user raised from a UPN-only row wrote. Never the alias entry: that UPN may
    have been given to this new account after its former holder alerted by object id. A principal
    named by UPN alone: the alias of its key (model.alias_key), which an alert of its user with
    an object id wrote. Observations that derive their principal (no `principal` field): none."""
    principal = _principal_field(observation)
    if principal is None:
        return None
    if principal.upn_form is not None:
        return key_of(replace(observation, principal=principal.upn_form))
    return alias_key(key_of(observation)) if principal.user_principal_name and not principal.user_id else None


def known_keys(keys_and_others: Iterable[tuple[str, str | None]], held: Collection[str]) -> frozenset[str]:
    """The baseline keys that already alerted: each held itself, or whose same-user key is held."""
    return frozenset(k for k, other in keys_and_others if k in held or (other is not None and other in held))


def _principal_field(observation: Any) -> Principal | None:
    """The observation's `principal` field; None when it has none (or derives it in a property)."""
    return observation.principal if any(f.name == "principal" for f in fields(observation)) else None


def principal_key(observation: Any) -> str:
    """The default baseline key of an observation: its principal's."""
    return str(observation.principal.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    id: str
    title: str
    severity: Severity  # the highest it can raise; a finding may be lower
    mitre: tuple[str, ...]
    description: str
    runbook: tuple[str, ...]
    false_positives: tuple[str, ...]
    query_file: Path
    # "principal": alert once per principal, ever (a baseline); "event": alert every event exactly once.
    dedupe: Literal["principal", "event"]
    parse: Callable[[Row], Any]
    evaluate: Callable[[Sequence[Any], Context], list[Finding]]
    cases: tuple[Case, ...] = field(default=())
    # dedupe="principal": the baseline key of an observation, equal to the baseline_key of the
    # finding it becomes (looked up before evaluate, written when the alert is committed).
    baseline_key: Callable[[Any], str] = principal_key

    @property
    def query(self) -> str:
        return kql.load(self.query_file)  # read once per process


def text(row: Row, column: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = row.get(column)
    if value is None or value == "" or value == "None":  # the SDK renders a null guid as 'None'
        if required:
            raise RowError(f"{column} is empty")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"{column} is a {type(value).__name__}, expected text")
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def when(row: Row, column: str) -> datetime:
    value = row.get(column)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RowError(f"{column} is not a datetime") from None
    if not isinstance(value, datetime):
        raise RowError(f"{column} is missing or not a datetime")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def optional_when(row: Row, column: str) -> datetime | None:
    """A datetime column that may be empty (a left join that found nothing)."""
    return None if row.get(column) in (None, "", "None") else when(row, column)


def count(row: Row, column: str) -> int:
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RowError(f"{column} is not a count")
    return value


def dynamic(row: Row, column: str) -> Any:
    """A dynamic column: JSON text from the query API, or already parsed."""
    value = row.get(column)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise RowError(f"{column} is not valid JSON") from None
    return value


def text_list(row: Row, column: str, limit: int = MAX_TEXT) -> tuple[str, ...]:
    value = dynamic(row, column)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RowError(f"{column} is not a list")
    return tuple(str(v)[:limit] for v in value if isinstance(v, (str, int)) and str(v))


def object_id(row: Row, column: str) -> str | None:
    value = text(row, column)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise RowError(f"{column} is not an object id") from None


# Client applications people meet on the ARM control plane (DOMAIN.md section 2).
CLIENT_APPS = {
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46": "Azure CLI (also Terraform, Bicep, scripts)",
    "1950a258-227b-4e31-a9cf-717495945fc2": "Azure PowerShell",
    "0c1307d4-29d6-4389-a11c-5cbe7f65d7fa": "Azure mobile app",
    "c44b4083-3bb0-49c1-b47d-974e53cbdf3c": "Azure portal",
}


def client_app_name(app_id: str) -> str:
    return CLIENT_APPS.get(app_id.lower(), f"other app {app_id}")


def distinct(values: Iterable[str | None]) -> list[str]:
    """The non-empty values, each once, in first-seen order."""
    return list(dict.fromkeys(v for v in values if v))


def new_groups(observations: Sequence[T], key: Callable[[T], str], known: frozenset[str]) -> list[list[T]]:
    """Observations grouped by their baseline key, minus keys already alerted; each group oldest first."""
    groups: dict[str, list[T]] = {}
    for observation in observations:
        groups.setdefault(key(observation), []).append(observation)
    return [
        sorted(group, key=lambda o: (o.time, o.event_id))  # type: ignore[attr-defined]
        for group_key, group in groups.items()
        if group_key not in known
    ]


def principal_facts(principal: Principal, role: str = "Account") -> tuple[tuple[str, str], ...]:
    """The card's first two facts about whom a finding is about: its name, and its object id."""
    return ((role, principal.label), ("Object id", principal.user_id or "not in the log"))


def summarize_list(values: Sequence[str], shown: int = 5) -> str:
    """'a, b, c and 4 more': cards stay small however many values there are."""
    if not values:
        return "none"
    head = ", ".join(values[:shown])
    return head if len(values) <= shown else f"{head} and {len(values) - shown} more"
