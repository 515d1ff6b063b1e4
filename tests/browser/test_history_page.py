"""On-call's path through the history page in a real browser, served by the real function code.

Log rows go into the devstack's Log Analytics, the real timer function turns them into alerts
in Azurite, devstack/functions_host.py serves function_app over HTTPS, and headless Chromium
reads, filters, opens and acknowledges. Hostile values in the log rows must show as text.
Screenshots go to artifacts/.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.functions.timer import TimerRequest

from devstack.functions_host import FunctionsHost
from devstack.stack import Devstack
from monitors.detections.break_glass_use import BG_ID, BG_UPN, PASSWORD, sign_in_row
from monitors.detections.break_glass_weak_method import drill_row
from monitors.detections.user_arm_write import arm_row

REPO = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"
MD_LINK = "[Reset your MFA](https://evil.example/reset)"
IMG = '"><img src=x onerror=alert(2)>'
# What Teams would link without any markdown; the page shows it as text and links nothing.
BARE_LINKS = "www.evil.example/login help@evil.example"


@dataclass
class Site:
    host: FunctionsHost
    module: ModuleType

    @property
    def start_url(self) -> str:
        return self.host.url_for("alerts", with_key=True)


@pytest.fixture
def site(devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Two user-arm-write alerts and a hostile break-glass alert, made by the real timer function."""
    monkeypatch.setenv("BREAK_GLASS_ACCOUNTS", BG_ID)
    now = datetime.now(UTC)
    ingested = (now - timedelta(minutes=5)).isoformat()
    hostile = {
        **sign_in_row("xss-1", BG_ID, BG_UPN, "50126", PASSWORD),
        "TimeGenerated": (now - timedelta(minutes=20)).isoformat(),
        "AppDisplayName": XSS,
        "UserAgent": f"{XSS} {MD_LINK}",
        "LocationDetails": {"city": f"{IMG} {MD_LINK} {BARE_LINKS}", "countryOrRegion": XSS},
        "_IngestionTime": ingested,
    }
    # The account passed its drill 12 days ago, so the page holds just the three alerts above.
    drill = drill_row("drill-1", BG_ID, BG_UPN, now - timedelta(days=12))
    devstack.log_analytics.ingest("SigninLogs", [hostile, drill])
    devstack.log_analytics.ingest(
        "AzureActivity",
        [
            {
                **arm_row(f"w-{n}", upn, None),
                "TimeGenerated": (now - timedelta(hours=n)).isoformat(),
                "_IngestionTime": ingested,
            }
            for n, upn in enumerate(["ops@contoso.com", "svc-terraform@contoso.com"], start=1)
        ],
    )
    sys.path.insert(0, str(REPO))
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    functions = module.app.get_functions()  # once per app: the host gets the same list
    (timer,) = [f for f in functions if f.get_function_name() == "monitor_tick"]
    timer.get_user_function()(TimerRequest(past_due=False))
    with FunctionsHost(functions, devstack.state_dir) as host:
        yield Site(host=host, module=module)
    sys.modules.pop("function_app", None)
    sys.path.remove(str(REPO))


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # The devstack's own CA signs the host's certificate; trusted for this context only.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    tab.console_errors = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.on("console", lambda message: message.type == "error" and tab.console_errors.append(message.text))
    yield tab
    context.close()


def test_on_call_filters_opens_and_acknowledges_an_alert(site: Site, page: Any, artifacts: Path) -> None:
    response = page.goto(site.start_url)
    assert response.status == 200
    assert page.locator("h1").inner_text() == "Alert history"
    rows = page.locator("table.alerts tbody tr")
    assert rows.count() == 3
    chart = page.locator("svg[role=img]")
    assert chart.locator("title#chart-title").text_content().startswith("Alerts per day by detection")
    assert page.locator("table.chart-table").count() == 1  # the chart's text alternative
    # The stylesheet is allowed by its CSP hash: styles apply, and nothing was refused.
    assert (
        page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(36, 41, 47)"
    )
    page.screenshot(path=artifacts / "history-list.png", full_page=True)

    # filter with the form, as a person would
    page.select_option("select[name=detection]", "break-glass-use")
    page.click("form.filters button[type=submit]")
    query = parse_qs(urlsplit(page.url).query)
    assert query["detection"] == ["break-glass-use"]
    assert query["code"] == [site.host.key]  # the key travels with the form
    assert rows.count() == 1
    assert page.locator("table.alerts tbody tr td").nth(2).inner_text() == "break-glass-use"

    # open the alert
    page.locator("table.alerts a.alert-link", has_text="Break-glass").click()
    assert re.search(r"/api/alerts/\d{13}-[0-9a-f]{12}\?code=", page.url)
    body = page.locator("main")
    for hostile in (XSS, MD_LINK, IMG.strip(), BARE_LINKS):
        assert hostile in body.inner_text(), f"{hostile!r} is not shown literally"
    assert page.locator("a[href*='evil']").count() == 0
    assert page.locator("main img, main script").count() == 0
    assert page.locator("tr.flagged").count() == 1  # the failed password sign-in is flagged
    assert "⚠ flagged" in page.locator("tr.flagged").inner_text()
    assert "What to do" in body.inner_text()

    # acknowledge with a name and a note
    page.fill("input[name=name]", "Kari Nordmann")
    page.fill("textarea[name=note]", "Calling the account owners; INC-1042")
    page.click("button[value=acknowledge]")
    page.wait_for_load_state()
    assert page.locator("#status").inner_text() == "acknowledged"
    history_row = page.locator("table.status-history tbody tr").first.inner_text()
    assert "Kari Nordmann" in history_row
    assert "new → acknowledged" in history_row
    assert "INC-1042" in history_row
    assert "code=" in page.url
    page.screenshot(path=artifacts / "history-alert.png", full_page=True)

    assert page.dialogs == [], f"a dialog fired: {page.dialogs}"
    assert page.console_errors == [], page.console_errors  # a CSP refusal would show here


def test_a_form_posted_from_another_origin_is_refused(site: Site, page: Any, artifacts: Path) -> None:
    page.goto(site.start_url)
    page.locator("table.alerts a.alert-link").first.click()
    action = page.locator("form.status").get_attribute("action")
    token = page.locator("input[name=csrf]").get_attribute("value")
    target = site.host.url + action
    # The worst case: the attacker knows the key and a valid token, but posts from its own site,
    # https://evil.example (answered by the browser's request interception; it never leaves it).
    attacker = (
        f'<form method="post" action="{target}"><input name="csrf" value="{token}">'
        '<input name="action" value="acknowledge"><input name="name" value="Mallory">'
        '<button type="submit">win a prize</button></form>'
    )
    page.route(
        "https://evil.example/**", lambda route: route.fulfill(body=attacker, content_type="text/html")
    )
    page.goto("https://evil.example/prize")
    with page.expect_navigation():
        page.click("button")
    assert "Request refused" in page.locator("main").inner_text()
    posts = [status for method, path, status in site.host.requests if method == "POST"]
    assert posts == [403]  # it reached the function, which refused it
    page.goto(site.start_url)
    assert page.locator("table.alerts .st-new").count() == 3  # nothing was acknowledged
