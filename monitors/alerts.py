"""Pure rules for turning findings into alerts and for delivering them.

Alert ids sort newest first (an inverted millisecond timestamp) so the history's default view
is a cheap range read, and end with a content hash so two alerts of one tick never collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors.model import Alert, EventLine, Finding, Principal, Severity

MAX_EVENTS_PER_ALERT = 200  # a larger burst becomes several alerts, each a small message
_MAX_MS = 10**13 - 1
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)


def alert_id_prefix(moment: datetime) -> str:
    """The time part of an alert id: later moments give smaller prefixes (newest first)."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}"


def alert_id(finding: Finding, created_at: datetime, part: int) -> str:
    digest = hashlib.sha256(
        "|".join([finding.detection, finding.principal.key, finding.event_ids[0], str(part)]).encode()
    ).hexdigest()[:12]
    return f"{alert_id_prefix(created_at)}-{digest}"


def make_alerts(findings: Sequence[Finding], created_at: datetime) -> list[Alert]:
    alerts = []
    for finding in findings:
        parts = _split(finding)
        for number, part in enumerate(parts, start=1):
            alerts.append(
                Alert(
                    alert_id=alert_id(part, created_at, number),
                    finding=part,
                    created_at=created_at,
                    part=number,
                    parts=len(parts),
                )
            )
    return alerts


def _split(finding: Finding) -> list[Finding]:
    if len(finding.event_ids) <= MAX_EVENTS_PER_ALERT:
        return [finding]
    events_by_id = {e.event_id: e for e in finding.events}
    parts = []
    for start in range(0, len(finding.event_ids), MAX_EVENTS_PER_ALERT):
        ids = finding.event_ids[start : start + MAX_EVENTS_PER_ALERT]
        events = tuple(events_by_id[i] for i in ids if i in events_by_id)
        times = [e.time for e in events] or [finding.first_time, finding.last_time]
        parts.append(
            replace(finding, event_ids=ids, events=events, first_time=min(times), last_time=max(times))
        )
    return parts


def next_attempt(attempts: int, now: datetime, retry_after_s: float | None) -> datetime:
    """Exponential backoff, never sooner than the webhook's own Retry-After."""
    backoff = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)
    if retry_after_s is not None:
        backoff = max(backoff, timedelta(seconds=min(retry_after_s, BACKOFF_MAX.total_seconds())))
    return now + backoff


# --- JSON form, for the outbox and the history (Table Storage holds text, not objects)


def to_json(alert: Alert) -> dict[str, Any]:
    f = alert.finding
    subject = {} if f.subject is None else {"subject": f.subject}  # absent: payloads stay as before
    return {
        "alert_id": alert.alert_id,
        "created_at": alert.created_at.isoformat(),
        "part": alert.part,
        "parts": alert.parts,
        "detection": f.detection,
        "severity": f.severity.value,
        "user_id": f.principal.user_id,
        "user_principal_name": f.principal.user_principal_name,
        **({"episode": f.principal.episode} if f.principal.episode else {}),
        "headline": f.headline,
        "facts": [list(fact) for fact in f.facts],
        "events": [
            {
                "event_id": e.event_id,
                "time": e.time.isoformat(),
                "source": e.source,
                "fields": [list(field) for field in e.fields],
                "flagged": e.flagged,
            }
            for e in f.events
        ],
        "event_ids": list(f.event_ids),
        "first_time": f.first_time.isoformat(),
        "last_time": f.last_time.isoformat(),
        **subject,
    }


def from_json(data: dict[str, Any]) -> Alert:
    finding = Finding(
        detection=data["detection"],
        severity=Severity(data["severity"]),
        principal=Principal(
            user_id=data["user_id"],
            user_principal_name=data["user_principal_name"],
            episode=data.get("episode") or None,
        ),
        headline=data["headline"],
        facts=tuple((str(k), str(v)) for k, v in data["facts"]),
        events=tuple(
            EventLine(
                event_id=e["event_id"],
                time=_time(e["time"]),
                source=e["source"],
                fields=tuple((str(k), str(v)) for k, v in e["fields"]),
                flagged=bool(e["flagged"]),
            )
            for e in data["events"]
        ),
        event_ids=tuple(data["event_ids"]),
        first_time=_time(data["first_time"]),
        last_time=_time(data["last_time"]),
        subject=data.get("subject"),
    )
    return Alert(
        alert_id=data["alert_id"],
        finding=finding,
        created_at=_time(data["created_at"]),
        part=int(data["part"]),
        parts=int(data["parts"]),
    )


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
