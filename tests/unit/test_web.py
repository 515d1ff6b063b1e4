"""The history's web layer without a network: filters, view models, templates, CSRF, auth, headers.

The store is a small in-memory StateStore that evaluates the same filter strings Table Storage
gets, so HistoryStore's real query code runs; integration and browser tests use Azurite.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from monitors import alerts, history, web
from monitors.adapters.table_store import StaleWrite, pack
from monitors.detections import DETECTIONS
from monitors.history import FilterError, parse_filters
from monitors.history_store import HistoryStore, alert_entities
from monitors.model import Alert, EventLine, Finding, Principal, Severity

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = b"s" * 32
KEY = "Ab3-_defGHIjkl0123456789xyz"
XSS = "<script>alert(1)</script>"
MD_LINK = "[Reset your MFA](https://evil.example/reset)"
DETECTION_IDS = [d.id for d in DETECTIONS]


# --------------------------------------------------------------------------- fakes and builders

_CONDITION = re.compile(r"^(\w+) (eq|ne|gt|ge|lt|le) @(\w+)$")
_OPERATORS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


class MemoryStore:
    """StateStore in memory: ETags, and filters of `Name op @param` joined by `and`."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.queries: list[str] = []
        self._version = 0

    def _table(self, name: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.tables.setdefault(name, {})

    def _stamped(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        self._version += 1
        return {**{k: v for k, v in entity.items() if k != "etag"}, "etag": f"W/{self._version}"}

    def get(self, table: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        found = self._table(table).get((partition_key, row_key))
        return dict(found) if found else None

    def insert(self, table: str, entity: Mapping[str, Any]) -> bool:
        where = (entity["PartitionKey"], entity["RowKey"])
        if where in self._table(table):
            return False
        self._table(table)[where] = self._stamped(entity)
        return True

    def replace(self, table: str, entity: Mapping[str, Any], etag: str | None) -> None:
        where = (entity["PartitionKey"], entity["RowKey"])
        current = self._table(table).get(where)
        if etag is not None and (current is None or current["etag"] != etag):
            raise StaleWrite("changed meanwhile")
        self._table(table)[where] = self._stamped(entity)

    def upsert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int:
        for entity in entities:
            self.replace(table, entity, None)
        return 1

    def merge(self, table: str, entity: Mapping[str, Any]) -> None:
        where = (entity["PartitionKey"], entity["RowKey"])
        self._table(table)[where] = self._stamped({**self._table(table).get(where, {}), **entity})

    def delete(self, table: str, partition_key: str, row_key: str) -> None:
        self._table(table).pop((partition_key, row_key), None)

    def query(
        self,
        table: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        self.queries.append(query_filter)
        conditions = [_CONDITION.match(part.strip()) for part in query_filter.split(" and ")]
        assert all(conditions), query_filter
        for entity in sorted(self._table(table).values(), key=lambda e: (e["PartitionKey"], e["RowKey"])):
            if all(
                m and m[1] in entity and _OPERATORS[m[2]](entity[m[1]], parameters[m[3]]) for m in conditions
            ):
                yield dict(entity)


@dataclass(frozen=True)
class FakeWaiver:
    detection: str
    principal: str
    owner: str
    reason: str
    approver: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class FakeWaivers:
    def __init__(self, waivers: list[FakeWaiver], audit: list[dict[str, Any]]) -> None:
        self.waivers, self.entries = waivers, audit

    def list(self, now: datetime, include_inactive: bool = False) -> list[FakeWaiver]:
        return [w for w in self.waivers if include_inactive or w.active(now)]

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.entries[:limit]


def make_alert(
    n: int,
    *,
    detection: str = "user-arm-write",
    severity: Severity = Severity.HIGH,
    upn: str = "adele@contoso.com",
    user_id: str | None = "9b117c67-170e-4aed-9702-658b3fddc889",
    created: datetime | None = None,
    headline: str | None = None,
    fields: tuple[tuple[str, str], ...] = (("App", "Azure CLI"),),
) -> Alert:
    created = created or NOW - timedelta(hours=n)
    event = EventLine(
        event_id=f"ev-{n}", time=created, source="AzureActivity", fields=fields, flagged=n % 2 == 0
    )
    finding = Finding(
        detection=detection,
        severity=severity,
        principal=Principal(user_id=user_id, user_principal_name=upn),
        headline=headline or f"ARM writes by {upn}",
        facts=(("Account", upn), ("Writes", str(n))),
        events=(event,),
        event_ids=(event.event_id,),
        first_time=created,
        last_time=created,
    )
    (alert,) = alerts.make_alerts([finding], created)
    return alert


def store_with(alerts_: Iterable[Alert], status: str = "new") -> tuple[MemoryStore, HistoryStore]:
    store = MemoryStore()
    history_store = HistoryStore(store)
    history_store.write(
        entity
        for alert in alerts_
        for entity in alert_entities(
            alert, status=status, delivery="delivered", payload=pack(alerts.to_json(alert))
        )
    )
    return store, history_store


def site(history_store: HistoryStore, **changes: Any) -> web.Site:
    base = web.Site(history=history_store, secret=lambda: SECRET, clock=lambda: NOW)
    return replace(base, **changes)


def get(
    path: str, params: Mapping[str, str] | None = None, *, html: bool = True, **headers: str
) -> web.Request:
    route_params = {}
    match = re.fullmatch(r"/api/alerts/([^/]+)(/status)?", path)
    if match:
        route_params["alert_id"] = match[1]
    accept = {"accept": "text/html,application/xhtml+xml"} if html else {"accept": "application/json"}
    return web.Request(
        method="GET",
        url=f"https://monitor.example{path}",
        params=dict(params or {}),
        route_params=route_params,
        headers={**accept, **{k.replace("_", "-").lower(): v for k, v in headers.items()}},
    )


def post(alert_id: str, form: Mapping[str, str], *, code: str | None = KEY, **headers: str) -> web.Request:
    return web.Request(
        method="POST",
        url=f"https://monitor.example/api/alerts/{alert_id}/status",
        params={"code": code} if code else {},
        route_params={"alert_id": alert_id},
        headers={
            "origin": "https://monitor.example",
            "sec-fetch-site": "same-origin",
            "content-type": "application/x-www-form-urlencoded",
            **{k.replace("_", "-").lower(): v for k, v in headers.items()},
        },
        body=urlencode(form).encode(),
    )


def token_from(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


def text_of(page: str) -> str:
    """The page as a browser would show its text: tags gone, entities decoded."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", " ", page))


# --------------------------------------------------------------------------- filters


def test_no_filters_is_the_default_view() -> None:
    filters = parse_filters({}, DETECTION_IDS)
    assert filters.query() == history.HistoryQuery(limit=50)
    assert not filters.active


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"detection": "break-glass-use"}, {"detection": "break-glass-use"}),
        ({"severity": "Critical"}, {"severity": "critical"}),
        ({"status": "acknowledged"}, {"status": "acknowledged"}),
        ({"principal": " Adele@Contoso.com "}, {"principal": "Adele@Contoso.com"}),
        ({"since": "2026-02-01"}, {"since": datetime(2026, 2, 1, tzinfo=UTC)}),
        # a bare date as `until` includes that whole day
        ({"until": "2026-02-01"}, {"until": datetime(2026, 2, 1, 23, 59, 59, 999000, tzinfo=UTC)}),
        ({"since": "2026-02-01T08:30"}, {"since": datetime(2026, 2, 1, 8, 30, tzinfo=UTC)}),
        ({"since": "2026-02-01T08:30:00+02:00"}, {"since": datetime(2026, 2, 1, 6, 30, tzinfo=UTC)}),
        ({"until": "2026-02-01T08:30:00Z"}, {"until": datetime(2026, 2, 1, 8, 30, tzinfo=UTC)}),
        ({"limit": "200"}, {"limit": 200}),
        ({"after": "8227921599999-818c8008c6d3"}, {"after": "8227921599999-818c8008c6d3"}),
        ({"detection": "", "status": "", "since": ""}, {}),  # what a form sends for "any"
    ],
)
def test_each_filter_becomes_part_of_the_query(params: dict[str, str], expected: dict[str, Any]) -> None:
    query = parse_filters(params, DETECTION_IDS).query()
    assert query == replace(history.HistoryQuery(limit=50), **expected)


def test_filters_combine() -> None:
    params = {
        "detection": "user-arm-write",
        "severity": "high",
        "status": "new",
        "principal": "a@b.co",
        "since": "2026-01-01",
        "until": "2026-01-31",
        "limit": "10",
    }
    filters = parse_filters(params, DETECTION_IDS)
    assert filters.active
    assert filters.params() == {**params}  # links carry exactly what was asked
    assert filters.as_json()["since"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"detection": "nope"}, "detection must be one of user-arm-write, break-glass-use"),
        ({"severity": "urgent"}, "severity must be one of low, medium, high, critical"),
        ({"status": "open"}, "status must be one of new, acknowledged, resolved, waived"),
        ({"since": "yesterday"}, "since must be an ISO 8601 date"),
        ({"until": "2026-02-30"}, "until must be an ISO 8601 date"),
        ({"since": "1969-12-31"}, "since must lie between 2000 and 2199"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "since must not be later than until"),
        ({"principal": "x" * 257}, "principal must be an object id or UPN of at most 256"),
        ({"principal": "a\x1b[31m@b.co"}, "principal must be"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 200"),
        ({"limit": "201"}, "limit must be a whole number"),
        ({"limit": "ten"}, "limit must be a whole number"),
        ({"after": "../../etc"}, "after must be an alert id"),
        ({"severty": "high"}, "unknown parameter 'severty'"),
    ],
)
def test_bad_parameters_are_named_without_echoing_the_value(params: dict[str, str], problem: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters(params, DETECTION_IDS)
    assert len(caught.value.problems) == 1
    assert problem in caught.value.problems[0]
    for name, value in params.items():
        if name != "severty" and len(value) > 4:
            assert value not in caught.value.problems[0]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters({"detection": "x", "severity": "y", "status": "z", "bogus": "1"}, DETECTION_IDS)
    assert len(caught.value.problems) == 4


# --------------------------------------------------------------------------- the list page


def test_list_page_pages_newest_first_and_links_carry_the_key_and_filters() -> None:
    _, history_store = store_with(make_alert(n) for n in range(7))
    response = web.alert_list(site(history_store), get("/api/alerts", {"limit": "3", "code": KEY}))
    assert response.status == 200
    assert response.content_type == "text/html; charset=utf-8"
    ids = re.findall(r'href="/api/alerts/(\d{13}-[0-9a-f]{12})\?code=', response.body)
    assert ids == sorted(ids)
    assert len(ids) == 3
    next_link = re.search(r'href="([^"]+)" rel="next"', response.body)
    assert next_link
    query = parse_qs(urlsplit(next_link[1].replace("&amp;", "&")).query)
    assert query == {"after": [ids[-1]], "limit": ["3"], "code": [KEY]}
    assert f'<input type="hidden" name="code" value="{KEY}">' in response.body  # the filter form keeps it

    page2 = web.alert_list(
        site(history_store), get("/api/alerts", {"limit": "3", "after": ids[-1], "code": KEY})
    )
    ids2 = re.findall(r'href="/api/alerts/(\d{13}-[0-9a-f]{12})\?code=', page2.body)
    assert len(ids2) == 3
    assert ids2[0] > ids[-1]
    assert "« Newest" in page2.body
    assert "Alerts per day" not in page2.body  # the chart is on the first page only


def test_without_a_key_in_the_url_no_link_carries_one() -> None:
    _, history_store = store_with([make_alert(1)])
    body = web.alert_list(site(history_store), get("/api/alerts", x_functions_key=KEY)).body
    assert "code=" not in body
    assert KEY not in body


def test_a_malformed_code_is_not_copied_into_links() -> None:
    _, history_store = store_with([make_alert(1)])
    body = web.alert_list(site(history_store), get("/api/alerts", {"code": 'x"><script>'})).body
    assert "code=" not in body
    assert "<script>" not in body


def test_filtered_list_reads_the_index_partition() -> None:
    store, history_store = store_with(
        [make_alert(1), make_alert(2, detection="break-glass-use", severity=Severity.CRITICAL, upn="bg@x.co")]
    )
    store.queries.clear()
    response = web.alert_list(
        site(history_store), get("/api/alerts", {"detection": "break-glass-use"}, html=False)
    )
    rows = json.loads(response.body)["alerts"]
    assert [r["principal"] for r in rows] == ["bg@x.co"]
    assert store.queries == ["PartitionKey eq @pk"]  # one range read of detection|break-glass-use


def test_bad_parameters_give_a_400_page_that_escapes_the_parameter_name() -> None:
    _, history_store = store_with([])
    response = web.alert_list(site(history_store), get("/api/alerts", {"status": "open", "<b>x": "1"}))
    assert response.status == 400
    assert "text/html" in response.content_type
    assert "status must be one of new, acknowledged, resolved, waived" in response.body
    assert "<b>x" not in response.body
    assert "&lt;b&gt;x" in response.body
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    api = web.alert_list(site(history_store), get("/api/alerts", {"since": "soon"}, html=False))
    assert api.status == 400
    assert json.loads(api.body)["problems"] == [
        "since must be an ISO 8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T08:00Z"
    ]


def test_json_api_shape() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert, make_alert(2), make_alert(3)])
    response = web.alert_list(site(history_store), get("/api/alerts", {"limit": "2"}, html=False))
    assert response.content_type == "application/json; charset=utf-8"
    payload = json.loads(response.body)
    assert set(payload) == {"alerts", "next", "next_url", "filters", "warnings"}
    assert payload["warnings"] == []
    assert set(payload["alerts"][0]) == {
        "alert_id",
        "created_at",
        "detection",
        "severity",
        "principal",
        "headline",
        "events",
        "status",
        "delivery",
        "delivery_attempts",
        "last_delivery_error",
        "waiver",
    }
    assert payload["alerts"][0]["alert_id"] == alert.alert_id
    assert payload["next"] == payload["alerts"][-1]["alert_id"]
    assert payload["next_url"] == f"/api/alerts?after={payload['next']}&limit=2"

    detail = web.alert_detail(site(history_store), get(f"/api/alerts/{alert.alert_id}", html=False))
    body = json.loads(detail.body)
    assert body["alert"] == alerts.to_json(alert)
    assert body["status_history"] == []
    assert body["delivery_log"] == []
    assert body["status"] == "new"


def test_format_parameter_overrides_the_accept_header() -> None:
    _, history_store = store_with([make_alert(1)])
    as_json = web.alert_list(site(history_store), get("/api/alerts", {"format": "json"}))
    assert as_json.content_type.startswith("application/json")
    as_html = web.alert_list(site(history_store), get("/api/alerts", {"format": "html"}, html=False))
    assert as_html.content_type.startswith("text/html")
    assert web.alert_list(site(history_store), get("/api/alerts", {"format": "xml"})).status == 400


def test_unknown_alert_is_404_without_echoing_the_id() -> None:
    _, history_store = store_with([])
    for alert_id in ("9" * 13 + "-" + "a" * 12, "<script>", "../x"):
        response = web.alert_detail(site(history_store), get(f"/api/alerts/{alert_id}"))
        assert response.status == 404
        assert alert_id not in response.body


# --------------------------------------------------------------------------- escaping


def hostile_alert() -> Alert:
    return make_alert(
        1,
        detection="break-glass-use",
        upn=f"{XSS}@evil.example",
        headline=f"Break-glass account used: {XSS} {MD_LINK}",
        fields=(
            ("App", XSS),
            ("User agent", f'"><img src=x onerror=alert(2)> {MD_LINK}'),
            ("Location", "Oslo\u202egnp.exe"),
            ("Note", "line\x1b[31mred"),
        ),
    )


def test_log_values_render_as_text_on_every_page() -> None:
    alert = hostile_alert()
    _store, history_store = store_with([alert])
    history_store.record_delivery(alert.alert_id, delivery="retrying", attempts=1, error=XSS, now=NOW)
    history_store.set_status(alert.alert_id, "acknowledged", by=XSS, note=MD_LINK, now=NOW)
    waivers = FakeWaivers(
        [
            FakeWaiver(
                detection="user-arm-write",
                principal=XSS,
                owner=XSS,
                reason=MD_LINK,
                approver=XSS,
                created_by=XSS,
                created_at=NOW,
                expires_at=NOW + timedelta(days=3),
            )
        ],
        [
            {
                "at": NOW,
                "by": XSS,
                "action": "add",
                "detection": "user-arm-write",
                "principal": XSS,
                "details": {"reason": XSS},
            }
        ],
    )
    site_ = site(history_store, waivers=waivers)
    pages = [
        web.alert_list(site_, get("/api/alerts")).body,
        web.alert_detail(site_, get(f"/api/alerts/{alert.alert_id}")).body,
        web.waiver_audit(site_, get("/api/waivers/audit")).body,
    ]
    for page in pages:
        assert "<script" not in page
        assert "<img" not in page
        assert 'href="https://evil' not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "\u202e" not in page
        assert "\x1b" not in page
    detail = text_of(pages[1])
    assert XSS in detail  # shown literally, as logged
    assert MD_LINK in detail  # markdown is not rendered
    assert "Oslo[U+202E]gnp.exe" in detail  # a bidi override is shown, not obeyed
    assert "line[U+001B][31mred" in detail


def test_jinja_environment_autoescapes_every_template() -> None:
    body = web.render(
        "error.html",
        {
            "title": XSS,
            "status": 400,
            "problems": [XSS],
            "back_url": "/api/alerts",
            "user": XSS,
            "home_url": "/api/alerts",
        },
    )
    assert "<script" not in body
    assert body.count("&lt;script&gt;") == 4  # <title>, <h1>, the problem, the user


# --------------------------------------------------------------------------- headers


def test_every_response_carries_the_security_headers() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store)
    responses = [
        web.alert_list(s, get("/api/alerts")),
        web.alert_list(s, get("/api/alerts", html=False)),
        web.alert_list(s, get("/api/alerts", {"bogus": "1"})),
        web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}")),
        web.alert_status(s, post(alert.alert_id, {"action": "acknowledge"})),
        web.waiver_audit(s, get("/api/waivers/audit")),
    ]
    for response in responses:
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "script-src" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"


def test_the_csp_hash_matches_the_inline_stylesheet() -> None:
    _, history_store = store_with([])
    response = web.alert_list(site(history_store), get("/api/alerts"))
    (css,) = re.findall(r"<style>(.*?)</style>", response.body, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["Content-Security-Policy"]
    assert " style=" not in response.body  # inline style attributes would be blocked
    assert "<script" not in response.body


# --------------------------------------------------------------------------- acknowledge and resolve


def test_acknowledge_then_resolve_records_who_when_and_why() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store)
    page = web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}", {"code": KEY})).body
    assert f'action="/api/alerts/{alert.alert_id}/status?code={KEY}"' in page
    token = token_from(page)

    done = web.alert_status(
        s,
        post(alert.alert_id, {"csrf": token, "action": "acknowledge", "name": " Ola N. ", "note": "looking"}),
    )
    assert done.status == 303
    assert done.headers["Location"] == f"/api/alerts/{alert.alert_id}?code={KEY}"

    later = replace(s, clock=lambda: NOW + timedelta(minutes=5))
    token = token_from(web.alert_detail(later, get(f"/api/alerts/{alert.alert_id}")).body)
    done = web.alert_status(
        later,
        post(
            alert.alert_id,
            {"csrf": token, "action": "resolve", "name": "Kari", "note": "drill INC-42\nconfirmed by phone"},
        ),
    )
    assert done.status == 303
    entity, _ = history_store.get(alert.alert_id)
    assert entity["Status"] == "resolved"
    assert history.status_history(entity) == [
        {
            "at": NOW.isoformat(),
            "by": "Ola N.",
            "from": "new",
            "to": "acknowledged",
            "note": "looking",
            "via": "web, name as typed",
        },
        {
            "at": (NOW + timedelta(minutes=5)).isoformat(),
            "by": "Kari",
            "from": "acknowledged",
            "to": "resolved",
            "note": "drill INC-42\nconfirmed by phone",
            "via": "web, name as typed",
        },
    ]
    page = web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}")).body
    assert 'name="csrf"' not in page  # resolved: nothing left to do
    assert "drill INC-42\nconfirmed by phone" in page
    # the index copies were updated too: the status filter finds it
    listing = web.alert_list(s, get("/api/alerts", {"status": "resolved"}, html=False))
    assert [a["alert_id"] for a in json.loads(listing.body)["alerts"]] == [alert.alert_id]


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"action": "acknowledge", "note": "n"}, "your name is required"),
        ({"action": "acknowledge", "name": "a\u202eb"}, "your name must be printable text"),
        ({"action": "resolve", "name": "Kari", "note": "  "}, "a note is required to resolve"),
        ({"action": "resolve", "name": "Kari", "note": "x" * 2001}, "at most 2000"),
        ({"action": "delete", "name": "Kari"}, "the action must be acknowledge or resolve"),
    ],
)
def test_bad_form_input_is_a_400_that_keeps_what_was_typed(form: dict[str, str], problem: str) -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store)
    token = token_from(web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}")).body)
    response = web.alert_status(s, post(alert.alert_id, {**form, "csrf": token}))
    assert response.status == 400
    assert problem in text_of(response.body)
    if form.get("note", "").strip() and len(form["note"]) < 100:
        assert f">{form['note']}</textarea>" in response.body
    assert history_store.get(alert.alert_id)[0]["Status"] == "new"


def test_a_resolved_alert_cannot_be_acknowledged() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert], status="resolved")
    s = site(history_store)
    token = web.csrf_token(SECRET, alert.alert_id, "", NOW)
    response = web.alert_status(
        s, post(alert.alert_id, {"csrf": token, "action": "acknowledge", "name": "K"})
    )
    assert response.status == 400
    assert "the alert is resolved; it cannot be acknowledged now" in response.body


def test_a_concurrent_change_is_a_409_and_records_nothing() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])

    class Racing(HistoryStore):
        def set_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            HistoryStore.set_status(self, alert.alert_id, "acknowledged", by="someone else", note="", now=NOW)
            return super().set_status(*args, **kwargs)

    racing = Racing(history_store.store)
    s = site(racing)
    token = web.csrf_token(SECRET, alert.alert_id, "", NOW)
    response = web.alert_status(
        s, post(alert.alert_id, {"csrf": token, "action": "acknowledge", "name": "K"})
    )
    assert response.status == 409
    assert "Someone changed this alert meanwhile: it is now acknowledged" in response.body
    assert [h["by"] for h in history.status_history(history_store.get(alert.alert_id)[0])] == ["someone else"]


# --------------------------------------------------------------------------- CSRF


def test_csrf_token_is_bound_to_the_alert_the_person_and_time() -> None:
    token = web.csrf_token(SECRET, "a-1", "kari@contoso.com", NOW)
    assert web.csrf_valid(SECRET, token, "a-1", "kari@contoso.com", NOW + timedelta(hours=1))
    assert not web.csrf_valid(SECRET, token, "a-2", "kari@contoso.com", NOW)  # another alert
    assert not web.csrf_valid(SECRET, token, "a-1", "ola@contoso.com", NOW)  # another person
    assert not web.csrf_valid(b"t" * 32, token, "a-1", "kari@contoso.com", NOW)  # another secret
    assert not web.csrf_valid(SECRET, token, "a-1", "kari@contoso.com", NOW + timedelta(hours=13))  # expired
    issued, mac = token.split(".")
    forged = f"{int(issued) + 1}.{mac}"
    assert not web.csrf_valid(SECRET, forged, "a-1", "kari@contoso.com", NOW)
    for junk in ("", ".", "x.y", "1" * 40 + ".00", token + "0"):
        assert not web.csrf_valid(SECRET, junk, "a-1", "kari@contoso.com", NOW)


@pytest.mark.parametrize(
    ("form_token", "headers"),
    [
        (None, {}),  # no token
        ("1772366400.deadbeef", {}),  # a wrong token
        ("other-alert", {}),  # a token for another alert
        ("valid", {"origin": "https://evil.example"}),
        ("valid", {"sec_fetch_site": "cross-site"}),
        ("valid", {"sec_fetch_site": "same-site"}),
        ("valid", {"origin": "null", "sec_fetch_site": ""}),
        ("valid", {"origin": "null", "sec_fetch_site": "cross-site"}),
    ],
)
def test_state_changes_without_a_valid_token_or_from_another_site_are_refused(
    form_token: str | None, headers: dict[str, str]
) -> None:
    alert, other = make_alert(1), make_alert(2)
    _, history_store = store_with([alert, other])
    s = site(history_store)
    tokens = {
        "valid": web.csrf_token(SECRET, alert.alert_id, "", NOW),
        "other-alert": web.csrf_token(SECRET, other.alert_id, "", NOW),
    }
    form = {"action": "acknowledge", "name": "Mallory", "note": "x"}
    if form_token is not None:
        form["csrf"] = tokens.get(form_token, form_token)
    response = web.alert_status(s, post(alert.alert_id, form, **headers))
    assert response.status == 403
    assert history_store.get(alert.alert_id)[0]["Status"] == "new"


def test_same_origin_rules() -> None:
    def request(**headers: str) -> web.Request:
        return web.Request(method="POST", url="https://app.example/api/alerts/x/status", headers=headers)

    assert web.cross_site_problem(request(), None) is None  # curl: the token alone decides
    assert web.cross_site_problem(request(**{"sec-fetch-site": "same-origin"}), None) is None
    assert web.cross_site_problem(request(origin="https://app.example"), None) is None
    assert web.cross_site_problem(request(origin="https://app.example:443"), None) is None
    assert web.cross_site_problem(request(origin="https://front.example"), "https://front.example") is None
    assert web.cross_site_problem(request(origin="http://app.example"), None)
    assert web.cross_site_problem(request(origin="https://app.example.evil"), None)
    assert web.cross_site_problem(request(**{"sec-fetch-site": "none"}), None)
    # no-referrer makes browsers send Origin: null on same-origin posts; Sec-Fetch-Site decides then
    assert web.cross_site_problem(request(origin="null", **{"sec-fetch-site": "same-origin"}), None) is None
    assert web.cross_site_problem(request(origin="null"), None)
    assert web.cross_site_problem(request(origin="null", **{"sec-fetch-site": "cross-site"}), None)


def test_get_requests_never_change_state() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store)
    request = replace(post(alert.alert_id, {}), method="GET")
    assert web.alert_status(s, request).status == 405


def test_the_secret_is_created_once_in_table_storage_and_reused() -> None:
    store = MemoryStore()
    first, second = web.StoredSecret(store), web.StoredSecret(store)
    assert first() == second()
    assert len(first()) == 32
    (entity,) = store.tables[web.CSRF_TABLE].values()
    assert entity["PartitionKey"] == "csrf"


# --------------------------------------------------------------------------- who acted


def test_without_easy_auth_the_principal_header_is_ignored() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store)  # auth="function-key"
    page = web.alert_detail(
        s, get(f"/api/alerts/{alert.alert_id}", x_ms_client_principal_name="ceo@x.co")
    ).body
    assert 'name="name"' in page
    assert "Signed in as" not in page
    token = token_from(page)
    forged = post(
        alert.alert_id,
        {"csrf": token, "action": "acknowledge", "note": "n"},
        x_ms_client_principal_name="ceo@x.co",
    )
    assert web.alert_status(s, forged).status == 400  # the typed name is still required
    typed = post(
        alert.alert_id,
        {"csrf": token, "action": "acknowledge", "name": "Kari"},
        x_ms_client_principal_name="ceo@x.co",
    )
    assert web.alert_status(s, typed).status == 303
    assert history.status_history(history_store.get(alert.alert_id)[0])[0]["by"] == "Kari"


def test_with_easy_auth_the_principal_header_names_who_acted() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store, auth="easy-auth")
    user = {"x_ms_client_principal_name": "kari@contoso.com"}
    page = web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}", **user)).body
    assert 'name="name"' not in page
    assert "Signed in as kari@contoso.com" in page
    token = token_from(page)
    # a token is bound to the person it was issued to
    other = post(
        alert.alert_id, {"csrf": token, "action": "acknowledge"}, x_ms_client_principal_name="ola@x.co"
    )
    assert web.alert_status(s, other).status == 403
    done = web.alert_status(
        s, post(alert.alert_id, {"csrf": token, "action": "acknowledge", "name": "ignored"}, **user)
    )
    assert done.status == 303
    change = history.status_history(history_store.get(alert.alert_id)[0])[0]
    assert (change["by"], change["via"]) == ("kari@contoso.com", "web, Easy Auth")


def test_with_easy_auth_a_request_without_a_signed_in_user_is_refused() -> None:
    alert = make_alert(1)
    _, history_store = store_with([alert])
    s = site(history_store, auth="easy-auth")
    assert web.alert_list(s, get("/api/alerts")).status == 401
    assert web.alert_detail(s, get(f"/api/alerts/{alert.alert_id}", html=False)).status == 401
    token = web.csrf_token(SECRET, alert.alert_id, "", NOW)
    assert web.alert_status(s, post(alert.alert_id, {"csrf": token, "action": "acknowledge"})).status == 401


# --------------------------------------------------------------------------- alert page, chart, waivers


def test_alert_page_shows_what_the_card_showed_and_more() -> None:
    alert = make_alert(2, detection="break-glass-use", severity=Severity.CRITICAL)
    _, history_store = store_with([alert])
    history_store.record_delivery(alert.alert_id, delivery="retrying", attempts=1, error="HTTP 429", now=NOW)
    history_store.record_delivery(alert.alert_id, delivery="delivered", attempts=2, error=None, now=NOW)
    page = web.alert_detail(site(history_store), get(f"/api/alerts/{alert.alert_id}")).body
    text = text_of(page)
    detection = next(d for d in DETECTIONS if d.id == "break-glass-use")
    assert detection.title in text
    for step in detection.runbook:
        assert step in text
    for name, value in alert.finding.facts:
        assert name in text
        assert value in text
    assert "⚠ flagged" in text  # flagged events are marked with text, not colour alone
    assert 'class="flagged"' in page
    assert "HTTP 429" in text
    assert "delivered" in text
    assert "Attempts" in text
    assert "No changes yet" in text


def test_chart_view_stacks_days_by_detection_with_a_text_alternative() -> None:
    counts = {
        "2026-02-27": Counter({"user-arm-write": 3}),
        "2026-02-28": Counter(),
        "2026-03-01": Counter({"user-arm-write": 1, "break-glass-use": 2, "retired-detection": 1}),
    }
    chart = web.chart_view(counts, DETECTIONS)
    # every detection in the catalogue has a series (in catalogue order), then retired ones seen in history
    assert chart["series"] == [*DETECTION_IDS, "retired-detection"]
    assert chart["series"][:2] == ["user-arm-write", "break-glass-use"]
    assert len(chart["bars"]) == 4
    assert [row["total"] for row in chart["table"]] == [3, 0, 4]
    assert chart["desc"] == "7 alerts from 2026-02-27 to 2026-03-01; the busiest day was 2026-03-01 with 4."
    tallest = max(chart["bars"], key=lambda b: b["h"])
    assert tallest["label"] == "2026-02-27: 3 user-arm-write"
    assert web._nice_ceiling(0) == 2
    assert web._nice_ceiling(7) == 10
    assert web._nice_ceiling(41) == 100


def test_list_page_has_an_accessible_chart_and_the_active_waivers() -> None:
    _, history_store = store_with([make_alert(1), make_alert(30)])
    waivers = FakeWaivers(
        [
            FakeWaiver(
                detection="user-arm-write",
                principal="svc-deploy@contoso.com",
                owner="Platform team",
                reason="pipeline moves to a workload identity in March",
                approver="CISO",
                created_by="Kari",
                created_at=NOW - timedelta(days=10),
                expires_at=NOW + timedelta(days=3),
            ),
            FakeWaiver(
                detection="user-arm-write",
                principal="old@contoso.com",
                owner="x",
                reason="ended one",
                approver="y",
                created_by="z",
                created_at=NOW - timedelta(days=90),
                expires_at=NOW - timedelta(days=1),
            ),
        ],
        [],
    )
    page = web.alert_list(site(history_store, waivers=waivers), get("/api/alerts", {"code": KEY})).body
    assert re.search(r'<svg role="img" aria-labelledby="chart-title chart-desc"', page)
    assert '<title id="chart-title">Alerts per day by detection, last 14 days (UTC)</title>' in page
    assert "<summary>The chart's numbers as a table</summary>" in page
    text = text_of(page)
    assert "svc-deploy@contoso.com" in text
    assert "in 3 days" in text
    assert "CISO" in text
    assert "old@contoso.com" not in text  # only active waivers on the history page
    assert f'href="/api/waivers/audit?code={KEY}"' in page


def test_every_page_shows_what_the_settings_leave_unwatched() -> None:
    made = make_alert(1)
    _, history_store = store_with([made])
    warnings = ("No break-glass account is watched: <none>", "Alerts are not posted to Teams")
    warned = site(history_store, warnings=warnings)
    pages = [
        web.alert_list(warned, get("/api/alerts")).body,
        web.alert_detail(warned, get(f"/api/alerts/{made.alert_id}")).body,
        web.alert_detail(warned, get("/api/alerts/0000000000000-000000000000")).body,  # an error page
    ]
    for page in pages:
        assert page.count('<p class="warning" role="status">') == 2
        assert "No break-glass account is watched: <none>" in text_of(page)  # escaped, shown as text
        assert "<none>" not in page
    api = json.loads(web.alert_list(warned, get("/api/alerts", html=False)).body)
    assert api["warnings"] == list(warnings)
    assert len(api["alerts"]) == 1  # a warning, not an error: the alerts are still there
    assert 'class="warning"' not in web.alert_list(site(history_store), get("/api/alerts")).body


def test_settings_unavailable_is_503_in_the_format_asked_for() -> None:
    problems = ["TEAMS_WEBHOOK_URL is missing. Use ..."]
    page = web.settings_unavailable(get("/api/alerts", {"code": KEY}), problems)
    assert (page.status, page.content_type) == (503, "text/html; charset=utf-8")
    assert "TEAMS_WEBHOOK_URL is missing" in text_of(page.body)
    assert "no tick runs" in text_of(page.body)
    assert f'href="/api/alerts?code={KEY}"' in page.body  # the way back keeps the key
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for request in (get("/api/alerts", html=False), get("/api/alerts", {"format": "json"})):
        api = web.settings_unavailable(request, problems)
        assert api.status == 503
        payload = json.loads(api.body)
        assert payload["problems"] == problems
        assert "no tick runs" in payload["detail"]


def test_waiver_audit_page_and_json() -> None:
    _, history_store = store_with([])
    entry = {
        "at": NOW,
        "by": "Kari",
        "action": "revoke",
        "detection": "user-arm-write",
        "principal": "svc@contoso.com",
        "details": {"reason": "migrated"},
    }
    s = site(history_store, waivers=FakeWaivers([], [entry]))
    page = web.waiver_audit(s, get("/api/waivers/audit"))
    assert page.status == 200
    assert "migrated" in page.body
    assert "revoke" in page.body
    api = json.loads(web.waiver_audit(s, get("/api/waivers/audit", html=False)).body)
    assert api["audit"] == [{**entry, "at": "2026-03-01T12:00:00+00:00"}]
    assert web.waiver_audit(s, get("/api/waivers/audit", {"limit": "0"})).status == 400
    assert web.waiver_audit(s, get("/api/waivers/audit", {"x": "1"})).status == 400
