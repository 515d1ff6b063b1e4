"""Teams messages: one alert becomes one Adaptive Card posted through a Workflows webhook.

Pure functions, no I/O and no clock, so the same alert always gives the same JSON (a retry
posts exactly what the first attempt posted, and a golden file can pin the layout).

Two things make this more than formatting:

- Log values are attacker-influenced (user agents, app and location names, UPNs). Teams renders
  a markdown subset in TextBlock text *and* in FactSet titles and values, and links bare domains,
  e-mail addresses and URLs it finds in the text, so every piece of text goes through
  `escape_text`: a spray against a break-glass account must not be able to put a
  "[reset your MFA](https://evil)" link, or a bare "www.evil.example/login", into the security
  channel.
- Teams rejects messages above 28 KB, and a burst can carry thousands of events: the card is
  measured and trimmed (events first, then value lengths) until it fits.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitors.detections.base import Detection
from monitors.model import Alert, EventLine, Severity

if TYPE_CHECKING:
    from monitors.waivers import Waiver

# Teams rejects webhook messages above 28 KB (DOMAIN.md section 6). Build below 28,000 bytes, the
# stricter reading, with room for what a flow adds around the card.
MAX_MESSAGE_BYTES = 27_000
# A flow that answers 413 below that gets the card rebuilt at half the size, down to this.
SMALLEST_MESSAGE_BYTES = 4_000
MAX_VALUE_CHARS = 300  # one log value on the card; the alert history keeps the whole row
CARD_VERSION = "1.5"  # 1.6 fails through Power Automate
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

AZURE_PORTAL = "https://portal.azure.com"
# Portal blades, addressed by extension and blade name only. Filter parameters in the fragment
# (time range, user) are undocumented and change between portal versions; a blade name that
# stops resolving still lands on the portal, so the link degrades instead of breaking.
SIGN_IN_LOGS = "/#view/Microsoft_AAD_IAM/SignInEventsV3Blade"
ACTIVITY_LOG = "/#view/Microsoft_Azure_Monitoring/AzureMonitoringBrowseBlade/~/activityLog"
AUDIT_LOGS = "/#view/Microsoft_AAD_IAM/ActiveDirectoryMenuBlade/~/Audit"  # Entra ID > Audit logs

SIGN_IN_SOURCES = frozenset({"SigninLogs", "AADNonInteractiveUserSignInLogs"})

_COLORS = {
    Severity.CRITICAL: "Attention",
    Severity.HIGH: "Attention",
    Severity.MEDIUM: "Warning",
    Severity.LOW: "Default",
}
# Shorter and shorter values, tried in turn when even a card without events is too large.
_VALUE_LIMITS = (MAX_VALUE_CHARS, 100, 40)
_TITLE_CHARS = 80  # fact titles and event field labels
_RUNBOOK_CHARS = 600  # a runbook step is ours, but still bounded
_FLAG = "⚠"


@dataclass(frozen=True, slots=True, kw_only=True)
class CardLinks:
    """Where the card's buttons point; per deployment (sovereign clouds have other portals)."""

    history_url: str | None  # this alert in our history view; None when no history is published
    portal_url: str = AZURE_PORTAL

    def __post_init__(self) -> None:
        # Settings validate these already; checked again because a card button is clickable.
        if not self.portal_url.startswith("https://"):
            raise ValueError("portal_url must be an https:// URL")
        if self.history_url is not None and not self.history_url.startswith(("https://", "http://")):
            raise ValueError("history_url must be an http(s) URL")


# --------------------------------------------------------------------------- escaping

# Characters with inline meaning somewhere in Teams' markdown (CommonMark plus GFM extensions),
# Adaptive Card templating or the card's DATE/TIME functions:
#   \ escapes, ` code, * _ emphasis, [ ] ( ) links and images (! too), < > autolinks and HTML,
#   & entity references (&#91; is "["), ~ strikethrough, | tables, # headings,
#   { } templating "${...}" and "{{DATE(...)}}".
# Backslash-escaping ASCII punctuation is plain CommonMark and renders as the character itself.
_ESCAPED = frozenset("\\`*_[]()!<>&~|#{}")
# Controls that stand for a line or field break become spaces; every other control, format
# character (zero-width, bidi overrides like U+202E, BOM, soft hyphen) and lone surrogate goes.
_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# Autolinkers (Teams', GFM's, linkify-it's) find a link by its host ("evil.example", with or
# without "www." or a scheme), an e-mail's "@", a scheme's ":", a scheme-relative "//", or "\\"
# that browsers read as "/". An invisible WORD JOINER after each of these characters (and their
# ideographic and full-width forms, which URL parsers map to them), when text follows it, leaves
# the text as people read it but no host, address or scheme for a linkifier to match. It is in
# the *rendered* text, so it holds whether a linkifier runs before markdown or over its output;
# values are cleaned of format characters first, so a value cannot bring its own joiners. The
# joiner after "/" matters: linkify-it takes the joiner for a letter, so "//evil.\u2060example"
# alone is still a link. Markdown escapes do none of this: "https:\\/\\/evil.example" renders
# as a plain URL that a later pass links (tests/browser/test_card_links.py checks both).
# The cost: a value copied from a card carries the joiners; the alert history shows it clean.
UNLINK = "\u2060"
_LINK_PUNCTUATION = frozenset(".@:/\\\u3002\uff0e\uff61\uff20\uff1a\uff0f")
_LEADING_NUMBER = re.compile(r"^(\d+)\.(?= |$)")  # "1. x" is a list item, "203.0.113.7" is not


def escape_text(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Render `value` as inert text in a TextBlock or FactSet, at most `limit` characters shown.

    Order matters: clean, then bound (so an ellipsis never cuts an escape in half), then escape.
    """
    if limit < 2:
        raise ValueError("limit must leave room for a character and an ellipsis")
    cap = limit * 8  # a 10 MB value costs no more than a short one: only its start can be shown
    cut = len(value) > cap
    text = _clean(value[:cap] if cut else value)
    if cut or len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    escaped = "".join(_escape_char(ch, text[i + 1 : i + 2]) for i, ch in enumerate(text))
    # Block syntax only counts at the start of a line, and every value is one line: "1. x" and
    # "- x" would be lists there ("#", ">" and "*" are escaped everywhere already).
    escaped = _LEADING_NUMBER.sub(r"\1\\.", escaped)
    if escaped[:1] in ("-", "+"):
        escaped = "\\" + escaped
    return escaped


def _escape_char(ch: str, following: str) -> str:
    """`ch` escaped, and joined to what follows it if that could continue a host or a scheme."""
    escaped = "\\" + ch if ch in _ESCAPED else ch
    return escaped + UNLINK if ch in _LINK_PUNCTUATION and following not in ("", " ") else escaped


def _clean(value: str) -> str:
    """One line of printable text: breaks become spaces, whitespace runs collapse, controls go."""
    kept = []
    for ch in value:
        if ch in _BREAKS:
            kept.append(" ")
        elif unicodedata.category(ch) not in _DROPPED_CATEGORIES:
            kept.append(ch)
    # Leading spaces would make an indented code block; runs of them are noise.
    return " ".join("".join(kept).split())


# --------------------------------------------------------------------------- size


def message_size(message: dict[str, Any]) -> int:
    """Bytes of the message as posted: `json.dumps` defaults, as adapters/teams.py sends it.

    That form (ASCII escapes, ", " separators) is the largest of the usual encodings, so a
    message that fits here also fits if the poster switches to compact or UTF-8 JSON.
    """
    return len(json.dumps(message).encode())


# --------------------------------------------------------------------------- message


def build_message(
    alert: Alert, detection: Detection, links: CardLinks, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> dict[str, Any]:
    """The Workflows webhook message for one alert, never larger than `max_bytes`.

    Events are dropped first (as many as fit are shown, oldest first, with a line counting the
    rest); only when the card without events is too large are values shortened.
    """
    actions = _actions(alert, links)
    for limit in _VALUE_LIMITS:
        message = _fitted(alert, detection, actions, limit, max_bytes)
        if message is not None:
            return message
    # Only reachable with hundreds of facts or a tiny max_bytes: say where the details are.
    return _envelope(_minimal(alert, detection), actions)


def _fitted(
    alert: Alert, detection: Detection, actions: list[dict[str, Any]], limit: int, max_bytes: int
) -> dict[str, Any] | None:
    """The card with values bounded to `limit` and as many events as fit; None if none fit."""
    finding = alert.finding
    head = _header(alert, detection) + _facts(finding.facts, limit)
    tail = _runbook(detection.runbook)
    total = max(len(finding.event_ids), len(finding.events))

    def assemble(lines: list[dict[str, Any]]) -> dict[str, Any]:
        events = _events_section(lines, total) if finding.events else []
        return _envelope(head + events + tail, actions)

    size = message_size(assemble([]))
    if size > max_bytes:
        return None
    lines: list[dict[str, Any]] = []
    for event in finding.events:  # rendered lazily: a 10,000-event burst escapes only what fits
        line = _event_line(event, limit)
        cost = message_size(line) + len(", ")  # one more element of the body list
        if size + cost > max_bytes:
            break
        lines.append(line)
        size += cost
    message = assemble(lines)
    while lines and message_size(message) > max_bytes:  # the count line's digits changed: re-measure
        lines.pop()
        message = assemble(lines)
    return message


def test_message(sent_at: datetime) -> dict[str, Any]:
    """The card `python -m monitors doctor --send-test-card` posts: it says it is a test."""
    return _envelope(
        [
            _text("MFA monitor: test card", weight="Bolder", size="Medium"),
            _text(
                f"Sent by python -m monitors doctor at {sent_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC to check "
                "that this channel receives the monitor's alerts. Nothing to do."
            ),
        ],
        [],
    )


def _envelope(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _text(text: str, **style: Any) -> dict[str, Any]:
    """A TextBlock; `text` must already be escaped (or be our own markup around escaped parts)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _header(alert: Alert, detection: Detection, limit: int = MAX_VALUE_CHARS) -> list[dict[str, Any]]:
    finding = alert.finding
    first = f"{finding.severity.value.upper()} · {escape_text(detection.title, limit)}"
    if alert.parts > 1:
        first += f" · part {alert.part} of {alert.parts}"
    meta = (
        f"{escape_text(detection.id, _TITLE_CHARS)} · alert {escape_text(alert.alert_id, _TITLE_CHARS)}"
        f" · {_when(alert.created_at)}"
    )
    return [
        _text(first, weight="Bolder", color=_COLORS[finding.severity]),
        _text(escape_text(finding.headline, limit), size="Large", weight="Bolder", spacing="Small"),
        _text(meta, size="Small", isSubtle=True, spacing="Small"),
    ]


def _facts(facts: Sequence[tuple[str, str]], limit: int) -> list[dict[str, Any]]:
    if not facts:
        return []  # an empty FactSet is valid JSON but renders as a gap
    return [
        {
            "type": "FactSet",
            "facts": [
                {"title": escape_text(title, _TITLE_CHARS), "value": escape_text(value, limit) or "–"}
                for title, value in facts
            ],
            "spacing": "Medium",
        }
    ]


def _events_section(lines: list[dict[str, Any]], total: int) -> list[dict[str, Any]]:
    section = [_text(f"Events ({total:,}, oldest first)", weight="Bolder", separator=True, spacing="Medium")]
    section += lines
    hidden = total - len(lines)
    if hidden and lines:
        section.append(_text(f"and {hidden:,} more events (see the alert history)", isSubtle=True))
    elif hidden:
        section.append(_text(f"{hidden:,} events, too many to list here (see the alert history)"))
    return section


def _event_line(event: EventLine, limit: int) -> dict[str, Any]:
    """One event on one line; flagged ones get a mark and the attention color (not color alone)."""
    fields = [
        f"{escape_text(name, _TITLE_CHARS)}: {escape_text(value, limit)}" for name, value in event.fields
    ]
    text = " · ".join([_when(event.time), *fields])
    if event.flagged:
        return _text(f"{_FLAG} {text}", color="Attention", spacing="Small")
    return _text(text, spacing="Small")


def _runbook(steps: Sequence[str]) -> list[dict[str, Any]]:
    if not steps:
        return []
    # "**2.**" and not "2.": a TextBlock starting "2." is a list, and renderers may renumber it to 1.
    return [_text("What to do", weight="Bolder", separator=True, spacing="Medium")] + [
        _text(f"**{number}.** {escape_text(step, _RUNBOOK_CHARS)}", spacing="Small")
        for number, step in enumerate(steps, start=1)
    ]


def _minimal(alert: Alert, detection: Detection) -> list[dict[str, Any]]:
    note = "This alert is too large for a Teams message; open the alert history for its details."
    return [*_header(alert, detection, limit=_VALUE_LIMITS[-1]), _text(note, separator=True)]


def _actions(alert: Alert, links: CardLinks) -> list[dict[str, Any]]:
    """Action.OpenUrl only: Workflows cards cannot post back (no Action.Submit / Execute)."""
    portal = links.portal_url.rstrip("/")
    sign_ins = _open_url("Entra sign-in logs", portal + SIGN_IN_LOGS)
    activity = _open_url("Activity Log", portal + ACTIVITY_LOG)
    # The log the events came from goes first; ARM writes (no event lines) start at the Activity Log.
    from_sign_ins = any(e.source in SIGN_IN_SOURCES for e in alert.finding.events)
    portal_actions = [sign_ins, activity] if from_sign_ins else [activity, sign_ins]
    if any(e.source == "AuditLogs" for e in alert.finding.events):  # directory changes
        portal_actions = [_open_url("Entra audit logs", portal + AUDIT_LOGS), sign_ins]
    history = [_open_url("Open alert history", links.history_url)] if links.history_url else []
    return history + portal_actions


# --------------------------------------------------------------------------- waiver reminders

_REMINDER_STEPS = (
    "Still needed? The owner asks the approver for a new waiver before this one ends "
    "(python -m monitors waivers add ... --replace).",
    "Migrated to a workload identity, or no longer needed? Let it end, or revoke it now "
    "(python -m monitors waivers revoke ...).",
)


def build_waiver_reminder(waiver: Waiver, links: CardLinks) -> dict[str, Any]:
    """The Workflows message saying a waiver ends soon; one per waiver, small by construction.

    Its values come from people at the CLI, not from logs, and are escaped all the same.
    """
    principal = escape_text(waiver.principal)
    detection = escape_text(waiver.detection, _TITLE_CHARS)
    facts = (
        ("Principal", waiver.principal),
        ("Detection", waiver.detection),
        ("Owner", waiver.owner),
        ("Approved by", waiver.approver),
        ("Reason", waiver.reason),
        ("Recorded", f"by {waiver.created_by}, {_when(waiver.created_at)}"),
        ("Ends", _when(waiver.expires_at)),
    )
    headline = f"The waiver for {principal} ends {_when(waiver.expires_at)}"
    body = [
        _text(f"WAIVER ENDING · {detection}", weight="Bolder", color="Warning"),
        _text(headline, size="Large", weight="Bolder", spacing="Small"),
        _text(f"After that, this account's next {detection} finding alerts again.", spacing="Small"),
        *_facts(facts, _RUNBOOK_CHARS),
        *_runbook(_REMINDER_STEPS),
    ]
    portal = links.portal_url.rstrip("/")
    actions = [_open_url("Open alert history", links.history_url)] if links.history_url else []
    actions.append(_open_url("Activity Log", portal + ACTIVITY_LOG))
    return _envelope(body, actions)


def _open_url(title: str, url: str) -> dict[str, Any]:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def _when(moment: datetime) -> str:
    """UTC to the second, like the log rows, so times on the card match what the portal shows."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
