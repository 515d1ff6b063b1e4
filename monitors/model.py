"""Value objects shared by the core and the shell. Frozen: the core never mutates state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a finding is about. Object id when the log has one: UPNs can be renamed.

    `episode` narrows a once-per-principal baseline to one episode of a condition (a drill
    period, a silence that began at a given time): the key then names both, so the principal
    alerts again in the next episode. Labels, waivers and history by person ignore it.
    """

    user_id: str | None
    user_principal_name: str | None
    episode: str | None = None

    @property
    def identity(self) -> str:
        """Who, whatever the episode: the object id, else the lower-case UPN."""
        return self.user_id or (self.user_principal_name or "").lower()

    @property
    def key(self) -> str:
        return f"{self.identity}|{self.episode}" if self.episode else self.identity

    @property
    def label(self) -> str:
        return self.user_principal_name or self.user_id or "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventLine:
    """One log row an alert covers, as on-call reads it."""

    event_id: str
    time: datetime
    source: str  # the table it came from
    fields: tuple[tuple[str, str], ...]  # (label, value) pairs, already reduced to text
    flagged: bool = False  # something in this event needs a second look (e.g. a weak sign-in method)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """What a detection concluded from one tick's rows, before it becomes an alert."""

    detection: str
    severity: Severity
    principal: Principal
    headline: str
    facts: tuple[tuple[str, str], ...]
    events: tuple[EventLine, ...]
    event_ids: tuple[str, ...]  # every row covered, even when `events` lists only some
    first_time: datetime
    last_time: datetime
    # Once-per-principal detections: what besides the principal makes a finding new (e.g. the
    # client app, for "new per user and app"). None: the principal alone.
    subject: str | None = None

    @property
    def baseline_key(self) -> str:
        """What the baseline remembers for dedupe="principal" detections."""
        return baseline_key(self.principal, self.subject)


def baseline_key(principal: Principal, subject: str | None = None) -> str:
    return principal.key if subject is None else f"{principal.key}|{subject}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A finding given an identity and a time; what history stores and Teams receives.

    A very large burst is split into parts (each its own alert) so every message stays small.
    """

    alert_id: str
    finding: Finding
    created_at: datetime
    part: int = 1
    parts: int = 1
