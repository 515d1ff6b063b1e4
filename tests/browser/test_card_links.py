"""Cards carry no link an attacker wrote, as the real Adaptive Cards renderer draws them.

Teams links bare hosts, e-mail addresses and URLs it finds in card text. Here the Adaptive Cards
JS renderer draws the card in headless Chromium with markdown-it and its linkify-it detector on
(keener than its defaults: every TLD used below, bare IPv4 hosts), and two things are checked:
no <a> element in the drawn card, and no link that linkify-it finds in any drawn text, so a
detector that runs over the rendered text (after markdown has consumed the escapes) finds none
either. The control test puts the same values into a card unescaped and sees every one linked:
the detector is on, and these tests can fail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.card_render import card_page
from monitors.cards import UNLINK, CardLinks, build_message, build_waiver_reminder
from monitors.detections import break_glass_use
from monitors.model import Alert, EventLine, Finding, Principal, Severity
from monitors.waivers import Waiver

T0 = datetime(2026, 11, 20, 3, 12, tzinfo=UTC)
LINKS = CardLinks(history_url="https://monitor.example/api/alerts/a-1")
# What an attacker can put in a user agent, an app's display name, a location or a UPN.
HOSTILE = (
    "www.evil.example/login",
    "evil.example/login",
    "secure-login.com",
    "help@evil.example",
    "mailto:help@evil.example",
    "https://evil.example/reset",
    "https:\\/\\/evil.example/reset",  # backslash escapes that markdown turns into "https://"
    "https:\\\\evil.example",  # browsers read "\" in a URL as "/"
    "//evil.example/reset",
    "evil.example:8443/reset",
    "ftp://evil.example",
    "198.51.100.23/login",
    "xn--80ak6aa92e.com",
    "<https://evil.example>",
    "[Reset your MFA](https://evil.example/reset)",
    "Mozilla/5.0 (see www.evil.example) curl/8.4.0",
)

HOSTS = ("evil.example", "secure-login.com", "198.51.100.23", "xn--80ak6aa92e.com")

# Every element's text as drawn, and what linkify-it finds in each.
FIND_LINKS = """() => {
  const card = document.getElementById("card");
  const anchors = [...card.querySelectorAll("a")].map(a => a.outerHTML);
  const walker = document.createTreeWalker(card, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of window.linkifier.match(node.textContent) || []) found.push(match.text);
  }
  return {anchors, found, text: card.innerText};
}"""


def drawn(browser: Any, card: dict[str, Any]) -> dict[str, Any]:
    page = browser.new_page()
    try:
        page.set_content(card_page(card))
        page.wait_for_selector("#card .ac-adaptiveCard")
        return page.evaluate(FIND_LINKS)
    finally:
        page.close()


def hostile_alert(value: str) -> Alert:
    """`value` in every place a log value reaches: headline, fact titles and values, event lines."""
    finding = Finding(
        detection="break-glass-use",
        severity=Severity.CRITICAL,
        principal=Principal(user_id=None, user_principal_name=value),
        headline=f"Break-glass account used: {value}",
        facts=(("Account", value), (value, "fact title")),
        events=(
            EventLine(
                event_id="ev-0",
                time=T0,
                source="SigninLogs",
                fields=(("User agent", value), ("App", value), (value, "field name")),
                flagged=True,
            ),
        ),
        event_ids=("ev-0",),
        first_time=T0,
        last_time=T0,
    )
    return Alert(alert_id="a-1", finding=finding, created_at=T0, part=1, parts=1)


def content(message: dict[str, Any]) -> dict[str, Any]:
    return message["attachments"][0]["content"]


@pytest.mark.parametrize("value", HOSTILE)
def test_no_hostile_value_is_linked_anywhere_on_an_alert_card(browser: Any, value: str) -> None:
    card = content(build_message(hostile_alert(value), break_glass_use.DETECTION, LINKS))
    result = drawn(browser, card)
    assert result["anchors"] == []
    assert result["found"] == []
    assert _host(value) in result["text"].replace(UNLINK, "")  # shown, as text


def test_no_hostile_value_is_linked_on_a_waiver_reminder(browser: Any) -> None:
    value = " ".join(HOSTILE)
    waiver = Waiver(
        detection="user-arm-write", principal="help@evil.example", owner=value, reason=value,
        approver=value, created_by=value, created_at=T0, expires_at=T0,
    )  # fmt: skip
    result = drawn(browser, content(build_waiver_reminder(waiver, LINKS)))
    assert result["anchors"] == []
    assert result["found"] == []


def test_the_renderer_links_every_hostile_value_left_unescaped(browser: Any) -> None:
    """The control: the same values, not escaped, are links in the drawn card or its text."""
    body = [{"type": "TextBlock", "text": value, "wrap": True} for value in HOSTILE]
    card = {"type": "AdaptiveCard", "version": "1.5", "body": body}
    result = drawn(browser, card)
    linked = " ".join(result["anchors"] + result["found"])
    assert [value for value in HOSTILE if _host(value) not in linked] == []


def _host(value: str) -> str:
    """The host a hostile value names."""
    (host,) = [host for host in HOSTS if host in value]
    return host
