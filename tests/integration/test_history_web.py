"""The history routes served by the real function code over HTTPS (devstack/functions_host.py),
against Azurite: function keys, filters, paging, acknowledge/resolve, CSRF, Easy Auth."""

from __future__ import annotations

import html
import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack.functions_host import FunctionsHost
from devstack.stack import Devstack
from monitors import alerts, history
from monitors.adapters.table_store import pack
from monitors.bootstrap import services_from_environment
from monitors.history_store import TABLE, HistoryStore, alert_entities
from monitors.model import Alert, EventLine, Finding, Principal, Severity

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
HTML = {"Accept": "text/html,application/xhtml+xml"}


@dataclass
class Served:
    host: FunctionsHost
    session: requests.Session
    module: ModuleType

    def url(self, route: str, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.host.url_for(route + (f"?{query}" if query else ""))

    def api(self, route: str, **params: str) -> Any:
        response = self.session.get(self.url(route, **params), headers={"x-functions-key": self.host.key})
        assert response.status_code == 200, response.text
        return response.json()

    def page(self, route: str, **params: str) -> requests.Response:
        return self.session.get(self.url(route, code=self.host.key, **params), headers=HTML)


@pytest.fixture
def serve(devstack: Devstack, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable]:
    """Start the functions host over function_app imported fresh with these extra settings."""
    stack = ExitStack()

    def start(**settings: str) -> Served:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("function_app", None)
        module = importlib.import_module("function_app")
        host = stack.enter_context(FunctionsHost(module.app, devstack.state_dir))
        session = requests.Session()
        session.verify = str(devstack.certs.ca)
        stack.callback(session.close)
        return Served(host=host, session=session, module=module)

    sys.path.insert(0, str(REPO))
    yield start
    stack.close()
    sys.modules.pop("function_app", None)
    sys.path.remove(str(REPO))


def alert(
    n: int,
    *,
    detection: str = "user-arm-write",
    severity: Severity = Severity.HIGH,
    upn: str = "adele@contoso.com",
    user_id: str | None = None,
    hours_ago: float | None = None,
) -> Alert:
    created = NOW - timedelta(hours=n if hours_ago is None else hours_ago)
    event = EventLine(
        event_id=f"ev-{n}",
        time=created,
        source="AzureActivity",
        fields=(("Operation", "MICROSOFT.WEB/SITES/DELETE"),),
        flagged=False,
    )
    finding = Finding(
        detection=detection,
        severity=severity,
        principal=Principal(user_id=user_id, user_principal_name=upn),
        headline=f"ARM writes by {upn} #{n}",
        facts=(("Account", upn),),
        events=(event,),
        event_ids=(event.event_id,),
        first_time=created,
        last_time=created,
    )
    (made,) = alerts.make_alerts([finding], created)
    return made


def seed(items: list[tuple[Alert, str]]) -> HistoryStore:
    """Store alerts as the tick does (main entity + index copies), in batches."""
    store = services_from_environment().store
    entities = [
        entity
        for made, status in items
        for entity in alert_entities(
            made, status=status, delivery="delivered", payload=pack(alerts.to_json(made))
        )
    ]
    store.upsert_many(TABLE, entities)
    return HistoryStore(store)


def ids(payload: dict[str, Any]) -> list[str]:
    return [a["alert_id"] for a in payload["alerts"]]


def form_of(page: str) -> tuple[str, str]:
    action = re.search(r'<form class="status" method="post" action="([^"]+)"', page)
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert action, "no status form on the page"
    assert token, "no CSRF token in the form"
    return action[1].replace("&amp;", "&"), token[1]


# --------------------------------------------------------------------------- keys


def test_every_route_needs_the_function_key(serve: Callable) -> None:
    served = serve()
    made = alert(1)
    seed([(made, "new")])
    routes = ["alerts", f"alerts/{made.alert_id}", "waivers/audit"]
    for route in routes:
        assert served.session.get(served.url(route)).status_code == 401
        assert served.session.get(served.url(route, code="wrong-key-123")).status_code == 401
        assert served.session.get(served.url(route), headers={"x-functions-key": "nope"}).status_code == 401
        assert served.session.get(served.url(route, code=served.host.key)).status_code == 200
        assert (
            served.session.get(served.url(route), headers={"x-functions-key": served.host.key}).status_code
            == 200
        )
    post = served.session.post(served.url(f"alerts/{made.alert_id}/status"), data={"action": "acknowledge"})
    assert post.status_code == 401
    assert served.session.get(served.url("nothing-here", code=served.host.key)).status_code == 404


# --------------------------------------------------------------------------- filters and paging


def test_each_filter_and_combinations_over_http(serve: Callable) -> None:
    served = serve()
    bg = "7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d"
    a_new = alert(1, hours_ago=2)
    a_ack = alert(2, hours_ago=30, severity=Severity.MEDIUM, upn="Ops@Contoso.com")
    b_new = alert(
        3,
        hours_ago=50,
        detection="break-glass-use",
        severity=Severity.CRITICAL,
        upn="bg-admin1@contoso.onmicrosoft.com",
        user_id=bg,
    )
    b_res = alert(
        4,
        hours_ago=24 * 20,
        detection="break-glass-use",
        severity=Severity.CRITICAL,
        upn="bg-admin1@contoso.onmicrosoft.com",
        user_id=bg,
    )
    seed([(a_new, "new"), (a_ack, "acknowledged"), (b_new, "new"), (b_res, "resolved")])

    def found(**params: str) -> list[str]:
        return ids(served.api("alerts", **params))

    everything = [a_new.alert_id, a_ack.alert_id, b_new.alert_id, b_res.alert_id]
    assert found() == everything  # newest first
    assert found(detection="break-glass-use") == [b_new.alert_id, b_res.alert_id]
    assert found(severity="medium") == [a_ack.alert_id]
    assert found(status="new") == [a_new.alert_id, b_new.alert_id]
    assert found(principal="ops@contoso.com") == [a_ack.alert_id]  # any case
    assert found(principal=bg.upper()) == [b_new.alert_id, b_res.alert_id]  # the object id
    since = (NOW - timedelta(hours=40)).isoformat().replace("+00:00", "Z")
    until = (NOW - timedelta(hours=10)).isoformat().replace("+00:00", "Z")
    assert found(since=since) == [a_new.alert_id, a_ack.alert_id]
    assert found(until=until) == [a_ack.alert_id, b_new.alert_id, b_res.alert_id]
    assert found(since=since, until=until) == [a_ack.alert_id]
    assert found(detection="break-glass-use", status="resolved") == [b_res.alert_id]
    assert found(
        principal="bg-admin1@contoso.onmicrosoft.com",
        detection="break-glass-use",
        severity="critical",
        status="new",
    ) == [b_new.alert_id]
    assert found(principal="adele@contoso.com", detection="break-glass-use") == []

    # the page shows the same and keeps the filters in its form
    page = served.page("alerts", detection="break-glass-use", status="resolved").text
    assert b_res.alert_id in page
    assert b_new.alert_id not in page
    assert '<option value="resolved" selected>' in page
    assert '<option value="break-glass-use" selected>' in page


def test_paging_across_pages_newest_first(serve: Callable) -> None:
    served = serve()
    made = [alert(n, hours_ago=n * 0.5) for n in range(120)]
    seed([(m, "new") for m in made])
    expected = [m.alert_id for m in made]

    seen, after, pages = [], None, 0
    while True:
        payload = served.api("alerts", **({"after": after} if after else {}))
        seen += ids(payload)
        pages += 1
        after = payload["next"]
        if after is None:
            break
    assert pages == 3
    assert seen == expected

    # the HTML page's "Older" link carries the key and the filters, and lands on the next page
    first = served.page("alerts", limit="40", detection="user-arm-write")
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older
    next_url = older[1].replace("&amp;", "&")
    query = parse_qs(urlsplit(next_url).query)
    assert query["code"] == [served.host.key]
    assert query["detection"] == ["user-arm-write"]
    assert query["limit"] == ["40"]
    second = served.session.get(served.host.url + next_url, headers=HTML)
    assert second.status_code == 200
    rows = re.findall(r'href="/api/alerts/(\d{13}-[0-9a-f]{12})\?code=', second.text)
    assert rows == expected[40:80]


def test_bad_parameters_are_400_not_a_crash(serve: Callable) -> None:
    served = serve()
    for params in (
        {"detection": "nope"},
        {"severity": "urgent"},
        {"status": "open"},
        {"since": "last week"},
        {"until": "2026-13-01"},
        {"principal": "x" * 300},
        {"limit": "-1"},
        {"after": "zzz"},
        {"sort": "asc"},
    ):
        response = served.session.get(
            served.url("alerts", **params), headers={"x-functions-key": served.host.key}
        )
        assert response.status_code == 400, params
        assert response.json()["problems"]
        page = served.page("alerts", **params)
        assert page.status_code == 400
        assert "text/html" in page.headers["Content-Type"]
        for value in params.values():
            if len(value) > 5:
                assert value not in page.text
    response = served.page(f"alerts/{'9' * 13}-{'a' * 12}", bogus="1")
    assert response.status_code == 400


def test_json_api_detail_shape(serve: Callable) -> None:
    served = serve()
    made = alert(1)
    seed([(made, "new")])
    detail = served.api(f"alerts/{made.alert_id}")
    assert detail["alert"] == alerts.to_json(made)
    assert {"status_history", "delivery_log", "delivered_at", "waiver", "status"} <= set(detail)
    response = served.session.get(served.url(f"alerts/{made.alert_id}", code=served.host.key))
    for header, value in (
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
    ):
        assert response.headers[header] == value


# --------------------------------------------------------------------------- acknowledge and resolve


def test_acknowledge_and_resolve_through_the_page(serve: Callable) -> None:
    served = serve()
    made = alert(1)
    history_store = seed([(made, "new")])
    page = served.page(f"alerts/{made.alert_id}")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    action, token = form_of(page.text)
    assert f"code={served.host.key}" in action  # the key travels with the form

    origin = served.host.url
    response = served.session.post(
        served.host.url + action,
        headers={**HTML, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
        data={"csrf": token, "action": "acknowledge", "name": "Kari Nordmann", "note": "on it"},
        allow_redirects=False,
    )
    assert response.status_code == 303
    followed = served.session.get(served.host.url + response.headers["Location"], headers=HTML)
    assert 'id="status">acknowledged<' in followed.text
    assert "Kari Nordmann" in followed.text
    assert "on it" in followed.text

    action, token = form_of(followed.text)
    response = served.session.post(
        served.host.url + action,
        headers={"Origin": origin},
        data={"csrf": token, "action": "resolve", "name": "Ola", "note": "drill INC-7, confirmed"},
        allow_redirects=False,
    )
    assert response.status_code == 303
    entity, _ = history_store.get(made.alert_id)
    assert entity["Status"] == "resolved"
    changes = history.status_history(entity)
    assert [(c["by"], c["from"], c["to"], c["note"]) for c in changes] == [
        ("Kari Nordmann", "new", "acknowledged", "on it"),
        ("Ola", "acknowledged", "resolved", "drill INC-7, confirmed"),
    ]
    for change in changes:
        assert NOW - timedelta(minutes=1) <= datetime.fromisoformat(change["at"]) <= datetime.now(UTC)
    # the index copies follow: the status filter finds it
    assert ids(served.api("alerts", status="resolved")) == [made.alert_id]
    assert ids(served.api("alerts", status="resolved", detection="user-arm-write")) == [made.alert_id]


def test_state_changes_without_a_token_or_from_another_site_are_refused(serve: Callable) -> None:
    served = serve()
    made = alert(1)
    history_store = seed([(made, "new")])
    action, token = form_of(served.page(f"alerts/{made.alert_id}").text)
    url = served.host.url + action
    form = {"action": "acknowledge", "name": "Mallory", "note": "x"}
    attempts = [
        ({}, form),  # no token
        ({}, {**form, "csrf": token[:-4] + "0000"}),  # a wrong token
        ({"Origin": "https://evil.example"}, {**form, "csrf": token}),
        ({"Sec-Fetch-Site": "cross-site"}, {**form, "csrf": token}),
    ]
    for headers, data in attempts:
        response = served.session.post(url, headers=headers, data=data, allow_redirects=False)
        assert response.status_code == 403, (headers, data.keys())
    other = alert(2)
    seed([(other, "new")])
    other_url = url.replace(made.alert_id, other.alert_id)
    assert (
        served.session.post(other_url, data={**form, "csrf": token}).status_code == 403
    )  # bound to the alert
    assert history_store.get(made.alert_id)[0]["Status"] == "new"
    assert history_store.get(other.alert_id)[0]["Status"] == "new"


def test_principal_header_is_trusted_only_with_easy_auth(serve: Callable) -> None:
    made, second = alert(1), alert(2)
    history_store = seed([(made, "new"), (second, "new")])
    spoofed = {"X-MS-CLIENT-PRINCIPAL-NAME": "ceo@contoso.com"}

    served = serve()  # HISTORY_AUTH unset: function-key
    page = served.session.get(
        served.url(f"alerts/{made.alert_id}", code=served.host.key), headers={**HTML, **spoofed}
    )
    assert "Signed in as" not in page.text
    assert 'name="name"' in page.text
    action, token = form_of(page.text)
    no_name = served.session.post(
        served.host.url + action, headers=spoofed, data={"csrf": token, "action": "acknowledge"}
    )
    assert no_name.status_code == 400
    assert "your name is required" in no_name.text
    typed = served.session.post(
        served.host.url + action,
        headers=spoofed,
        allow_redirects=False,
        data={"csrf": token, "action": "acknowledge", "name": "Kari"},
    )
    assert typed.status_code == 303
    assert history.status_history(history_store.get(made.alert_id)[0])[-1]["by"] == "Kari"

    easy = serve(HISTORY_AUTH="easy-auth")
    signed_in = {"X-MS-CLIENT-PRINCIPAL-NAME": "kari@contoso.com"}
    assert easy.session.get(easy.url("alerts", code=easy.host.key), headers=HTML).status_code == 401
    page = easy.session.get(
        easy.url(f"alerts/{second.alert_id}", code=easy.host.key), headers={**HTML, **signed_in}
    )
    assert "Signed in as kari@contoso.com" in page.text
    assert 'name="name"' not in page.text
    action, token = form_of(page.text)
    done = easy.session.post(
        easy.host.url + action,
        headers=signed_in,
        allow_redirects=False,
        data={"csrf": token, "action": "acknowledge", "name": "someone else"},
    )
    assert done.status_code == 303
    change = history.status_history(history_store.get(second.alert_id)[0])[-1]
    assert (change["by"], change["via"]) == ("kari@contoso.com", "web, Easy Auth")


def test_a_bad_setting_makes_every_route_answer_503_naming_it(serve: Callable) -> None:
    # The functions are served (they were indexed); each says why the monitor is not running.
    made = alert(1)
    seed([(made, "new")])  # while the settings are still good
    served = serve(HISTORY_AUTH="sso", TEAMS_WEBHOOK_URL="https://evil.example.com/hook?sig=SECRET123")
    expected = [
        "TEAMS_WEBHOOK_URL points to host 'evil.example.com', which is not in TEAMS_ALLOWED_HOSTS",
        "HISTORY_AUTH is 'sso'; use function-key or easy-auth",
    ]
    page = served.page("alerts")
    assert page.status_code == 503
    shown = html.unescape(page.text)
    assert "The monitor is not running: fix its app settings" in shown
    for problem in expected:
        assert problem in shown
    assert made.alert_id not in shown  # the error instead of the alerts
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    key = {"x-functions-key": served.host.key}
    api = served.session.get(served.url("alerts"), headers=key)
    assert api.status_code == 503
    payload = api.json()
    assert len(payload["problems"]) == 2
    for problem, start in zip(payload["problems"], expected, strict=True):
        assert problem.startswith(start)
    assert "alerts" not in payload
    for route, method in ((f"alerts/{made.alert_id}", "GET"), ("waivers/audit", "GET"),
                          (f"alerts/{made.alert_id}/status", "POST")):  # fmt: skip
        response = served.session.request(method, served.url(route), headers=key)
        assert response.status_code == 503, route
        assert "HISTORY_AUTH is 'sso'" in response.text
    for response in (page, api):
        assert "SECRET123" not in response.text


def test_the_page_warns_when_no_break_glass_account_or_no_webhook_is_configured(serve: Callable) -> None:
    made = alert(1)
    seed([(made, "new")])
    served = serve(BREAK_GLASS_ACCOUNTS="none", TEAMS_WEBHOOK_URL="none")
    shown = html.unescape(served.page("alerts").text)
    assert "No break-glass account is watched: BREAK_GLASS_ACCOUNTS is none" in shown
    assert "Alerts are not posted to Teams: TEAMS_WEBHOOK_URL is none" in shown
    assert made.alert_id in shown  # still the history, with the warnings on top
    assert len(served.api("alerts")["warnings"]) == 2


def test_a_complete_configuration_shows_no_warning(serve: Callable) -> None:
    served = serve(BREAK_GLASS_ACCOUNTS="bg-admin@contoso.onmicrosoft.com")
    assert 'class="warning"' not in served.page("alerts").text
    assert served.api("alerts")["warnings"] == []


def test_the_csrf_secret_lives_in_table_storage(serve: Callable) -> None:
    served = serve()
    made = alert(1)
    seed([(made, "new")])
    served.page(f"alerts/{made.alert_id}")
    entity = services_from_environment().store.get("websecrets", "csrf", "v1")
    assert entity is not None
    assert len(entity["Value"]) >= 43
    assert entity["Value"] not in json.dumps(dict(__import__("os").environ))


def test_the_first_page_shows_the_monitor_s_health(serve: Callable, devstack: Devstack) -> None:
    """A healthy monitor says so; queries failing three ticks in a row are a problem on top."""
    from monitors.bootstrap import tick

    served = serve()
    services = services_from_environment()
    row = {"TimeGenerated": (NOW - timedelta(minutes=4)).isoformat(), "Id": "health-ordinary",
           "UserId": "0d4c5a1e-8f3b-4b6a-9c2d-7e1f0a9b8c7d", "ResultType": "0",
           "_IngestionTime": (NOW - timedelta(minutes=3)).isoformat()}  # fmt: skip
    devstack.log_analytics.ingest("SigninLogs", [row])  # the workspace's clock: 3 min ago
    tick(services, NOW)
    healthy = html.unescape(served.page("alerts").text)
    assert "Monitor health: healthy" in healthy
    assert 'role="alert">Monitor:' not in healthy
    devstack.log_analytics.set_fault("500", count=1000, match="LatestIngestion = max")
    try:
        for n in range(1, 4):
            assert tick(services, NOW + timedelta(minutes=5 * n)).query_errors  # the fault fired
    finally:
        devstack.log_analytics.clear_faults()
    shown = html.unescape(served.page("alerts").text)
    assert "Monitor: queries failed 3 ticks in a row: latest-ingestion" in shown
    assert "Ticks in a row with failed queries</dt><dd>3" in shown
    found = served.api("alerts")["health"]
    assert found["consecutive_failures"] == 3
    assert found["problems"][0].startswith("queries failed 3 ticks in a row")
    assert "health" not in served.api("alerts", after="9" * 13 + "-" + "a" * 12)  # first page only
