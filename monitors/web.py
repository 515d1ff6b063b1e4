"""The alert history over HTTP: HTML pages for people, a JSON API, acknowledge and resolve.

Handlers take a `Request` (plain data, no azure.functions types) and a `Site` (the history
store, the waivers, the settings that matter here) and return a `monitors.history.Response`;
function_app.py only converts. View models are built by pure functions and rendered by Jinja2
templates (monitors/templates/) with autoescaping: nothing from a log row or a request reaches
the page unescaped.

Security, in short (docs/oncall.md has the why):
- Every route needs a function key (the host checks it). When the key came as `?code=`, the
  page's links and forms carry it, or navigation would fail; Easy Auth in front is better.
- Who acted: the `X-MS-CLIENT-PRINCIPAL-NAME` header, only when HISTORY_AUTH=easy-auth (App
  Service strips and sets it there; anywhere else anyone can send it); else a typed name.
- State changes are POSTs that need a token bound to the alert (and, with Easy Auth, to the
  person): an HMAC with a secret kept in Table Storage. `Origin` and `Sec-Fetch-Site`, when
  present, must say same-origin. Anything else is refused with 403.
- Strict Content-Security-Policy (no script at all; the stylesheet by hash), nosniff,
  no-referrer (the key in a URL never leaves in a Referer), no-store, no framing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from monitors import history
from monitors.adapters.table_store import StaleWrite, StateStore
from monitors.cards import ACTIVITY_LOG, AZURE_PORTAL, SIGN_IN_LOGS, SIGN_IN_SOURCES
from monitors.detections import DETECTIONS
from monitors.detections.base import Detection
from monitors.health import Health, problems
from monitors.history import ALERT_ID, FilterError, Filters, InputError, Response
from monitors.history_store import STATUSES, HistoryStore, StatusConflict
from monitors.model import Alert

TEMPLATES = Path(__file__).parent / "templates"
ROUTE_PREFIX = "/api"
PRINCIPAL_HEADER = "x-ms-client-principal-name"
MAX_FORM_BYTES = 16 * 1024
TOKEN_MAX_AGE = timedelta(hours=12)
CHART_DAYS = 14
AUDIT_LIMIT = 100
CSRF_TABLE = "websecrets"
_FUNCTION_KEY = re.compile(r"^[A-Za-z0-9_\-=]{8,200}$")
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
# Shown instead of characters that could disguise text (bidi overrides) or are not text at all.
_DISGUISING = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What a handler needs from an HTTP request; header names lower-case."""

    method: str
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


class WaiverSource(Protocol):
    """monitors.waivers.WaiverBook, as the page reads it."""

    def list(self, now: datetime, include_inactive: bool = False) -> list[Any]: ...
    def audit(self, limit: int = 100) -> list[dict[str, Any]]: ...


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    history: HistoryStore
    secret: Callable[[], bytes]  # the CSRF secret; StoredSecret in production
    auth: str = "function-key"  # or "easy-auth" (settings.HISTORY_AUTH)
    detections: Sequence[Detection] = DETECTIONS
    waivers: WaiverSource | None = None
    portal_url: str = AZURE_PORTAL
    base_url: str | None = None  # HISTORY_BASE_URL: its origin is accepted for POSTs too
    clock: Callable[[], datetime] = _now
    # What the settings deliberately leave unwatched (Settings.warnings): a banner on every page.
    warnings: Sequence[str] = ()
    # The monitor's own health at a moment (monitors/health.py), shown above the first page.
    health: Callable[[datetime], Health] | None = None


class StoredSecret:
    """The CSRF secret: 32 random bytes in Table Storage, created on first use, then kept in memory.

    Never in settings or code. To rotate it, delete the entity (table `<prefix>websecrets`) and
    restart the app; open pages then need a reload.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._value: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            if self._value is None:
                self._value = self._load()
            return self._value

    def _load(self) -> bytes:
        entity = self._store.get(CSRF_TABLE, "csrf", "v1")
        if entity is None:
            fresh = {"PartitionKey": "csrf", "RowKey": "v1", "Value": secrets.token_urlsafe(32)}
            if self._store.insert(CSRF_TABLE, fresh):
                entity = fresh
            else:  # another instance created it first: use theirs
                entity = self._store.get(CSRF_TABLE, "csrf", "v1")
        if entity is None or len(entity.get("Value") or "") < 32:
            raise RuntimeError(f"the CSRF secret in table {CSRF_TABLE} is unreadable")
        return base64.urlsafe_b64decode(entity["Value"] + "==")


# --------------------------------------------------------------------------- handlers


def alert_list(site: Site, request: Request) -> Response:
    """GET /api/alerts: the history page (browsers) or the JSON list (API clients)."""
    context = _Context.of(site, request)
    if isinstance(context, Response):
        return context
    try:
        filters = history.parse_filters(_filter_params(request), _detection_ids(site), allowed=_PAGE_PARAMS)
    except FilterError as error:
        return context.error(400, "These filters cannot be used", error.problems)
    page = site.history.query(filters.query())
    links = context.links
    now = site.clock()
    first_page = filters.after is None
    monitor = site.health(now) if site.health is not None and first_page else None
    if not context.html:
        next_url = links.path("alerts", **filters.params(after=page.next_after)) if page.next_after else None
        return _json(200, {
            "alerts": [history.summary_json(row) for row in page.rows],
            "next": page.next_after,
            "next_url": next_url,
            "filters": filters.as_json(),
            "warnings": list(site.warnings),
            **({"health": monitor.as_json()} if monitor is not None else {}),
        })  # fmt: skip
    counts = site.history.daily_counts(CHART_DAYS, now) if first_page else None
    waivers = site.waivers.list(now) if site.waivers is not None and first_page else None
    view = list_view(filters, page.rows, page.next_after, counts, waivers, site.detections, links, now)
    return context.page(200, "list.html", {**view, "health": health_view(monitor) if monitor else None})


def alert_detail(site: Site, request: Request) -> Response:
    """GET /api/alerts/{alert_id}: one alert, everything known about it."""
    context = _Context.of(site, request)
    if isinstance(context, Response):
        return context
    if _filter_params(request):
        return context.error(
            400, "These parameters cannot be used", ["Only code and format are accepted here."]
        )
    found = _find(site, request.route_params.get("alert_id", ""))
    if found is None:
        return context.error(404, "No such alert", ["Check the link, or search the history."])
    entity, alert = found
    if not context.html:
        return _json(200, history.detail_json(entity, alert))
    return context.page(200, "alert.html", _alert_page(site, context, entity, alert))


def alert_status(site: Site, request: Request) -> Response:
    """POST /api/alerts/{alert_id}/status: acknowledge or resolve, from the alert page's form."""
    context = _Context.of(site, request, html=True)
    if isinstance(context, Response):
        return context
    if request.method.upper() != "POST":
        return context.error(405, "Use the form on the alert page", [])
    alert_id = request.route_params.get("alert_id", "")
    if not ALERT_ID.match(alert_id):
        return context.error(404, "No such alert", [])
    refusal = cross_site_problem(request, site.base_url)
    if refusal:
        return context.error(403, "Request refused", [refusal])
    if len(request.body) > MAX_FORM_BYTES:
        return context.error(413, "The form is too large", [f"At most {MAX_FORM_BYTES} bytes."])
    try:
        form = _form(request.body)
    except ValueError:
        return context.error(400, "The form could not be read", ["Send it as URL-encoded UTF-8."])
    now = site.clock()
    if not csrf_valid(site.secret(), form.get("csrf", ""), alert_id, context.binding, now):
        return context.error(403, "Request refused", [
            "The form's token is missing, expired or not for this alert. Reload the alert page and try again."
        ])  # fmt: skip
    found = site.history.get(alert_id)
    if found is None:
        return context.error(404, "No such alert", [])
    entity, alert = found
    try:
        target = history.status_for(form.get("action", ""))
        history.check_transition(entity["Status"], target)
        by = context.user or history.clean_name(form.get("name", ""), "your name")
        note = history.clean_note(form.get("note", ""), required=target == "resolved")
    except InputError as error:
        view = _alert_page(site, context, entity, alert, problem=str(error), form=form)
        return context.page(400, "alert.html", view)
    allowed_from = [status for status, targets in history.TRANSITIONS.items() if target in targets]
    try:
        site.history.set_status(
            alert_id, target, by=by, note=note, now=now, via=context.via, allowed_from=allowed_from
        )
    except (StatusConflict, StaleWrite):
        fresh = site.history.get(alert_id) or found
        problem = (
            f"Someone changed this alert meanwhile: it is now {fresh[0]['Status']}. Nothing was recorded."
        )
        view = _alert_page(site, context, fresh[0], fresh[1], problem=problem, form=form)
        return context.page(409, "alert.html", view)
    location = context.links.path(f"alerts/{alert_id}")
    return Response(
        status=303, body="", content_type=HTML, headers={**security_headers(), "Location": location}
    )


def settings_unavailable(request: Request, problems: Sequence[str]) -> Response:
    """Any route while the app settings are invalid: 503, each bad setting and its fix.

    SettingsError's messages never hold a setting's value (a webhook URL is a secret), so they
    can be shown to whoever holds a function key.
    """
    wanted = (request.params.get("format") or "").strip().lower()
    html = wanted == "html" or (wanted != "json" and "text/html" in request.header("accept").lower())
    context = _Context(html=html, links=Links(code=_function_key(request)), user=None, auth="function-key")
    return context.error(
        503, "The monitor is not running: fix its app settings", list(problems), SETTINGS_UNAVAILABLE_NOTE
    )


SETTINGS_UNAVAILABLE_NOTE = (
    "Until then no tick runs (nothing is detected, nothing reaches Teams) and the alert history "
    "is not shown. App settings: the Function App's Environment variables (docs/deploy.md)."
)


def waiver_audit(site: Site, request: Request) -> Response:
    """GET /api/waivers/audit: every waiver change, newest first."""
    context = _Context.of(site, request)
    if isinstance(context, Response):
        return context
    params = _filter_params(request)
    raw_limit = (params.pop("limit", "") or "").strip()
    if params or (raw_limit and not (raw_limit.isdigit() and 1 <= int(raw_limit) <= 1000)):
        return context.error(400, "These parameters cannot be used", ["Use limit (1 to 1000), code, format."])
    limit = int(raw_limit or AUDIT_LIMIT)
    entries = site.waivers.audit(limit) if site.waivers is not None else []
    now = site.clock()
    waivers = site.waivers.list(now, include_inactive=True) if site.waivers is not None else []
    if not context.html:
        return _json(200, {
            "audit": [{**e, "at": _iso(e["at"])} for e in entries],
            "waivers": [_waiver_json(w, now) for w in waivers],
        })  # fmt: skip
    view = {
        "title": "Waiver audit",
        "entries": [_audit_row(e) for e in entries],
        "waivers": [_waiver_row(w, now) for w in waivers],
        "limit": limit,
        "back_url": context.links.path("alerts"),
    }
    return context.page(200, "audit.html", view)


# --------------------------------------------------------------------------- request context


_PAGE_PARAMS = ("code", "format")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """Per request: HTML or JSON, who is acting (Easy Auth), the links carrying the key."""

    html: bool
    links: Links
    user: str | None  # the Easy Auth principal; None without Easy Auth
    auth: str
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, site: Site, request: Request, html: bool | None = None) -> _Context | Response:
        wanted = (request.params.get("format") or "").strip().lower()
        links = Links(code=_function_key(request))
        browser = "text/html" in request.header("accept").lower()
        warnings = tuple(site.warnings)
        if wanted not in ("", "html", "json"):
            context = cls(
                html=browser if html is None else html,
                links=links,
                user=None,
                auth=site.auth,
                warnings=warnings,
            )
            return context.error(400, "These parameters cannot be used", ["format must be html or json."])
        if html is None:
            html = wanted == "html" or (not wanted and browser)
        user = None
        if site.auth == "easy-auth":
            try:
                user = history.clean_name(request.header(PRINCIPAL_HEADER), "the signed-in user")
            except InputError:
                context = cls(html=html, links=links, user=None, auth=site.auth, warnings=warnings)
                return context.error(401, "Sign-in required", [
                    "HISTORY_AUTH is easy-auth but the request carries no signed-in user "
                    "(X-MS-CLIENT-PRINCIPAL-NAME). Turn on App Service Authentication (docs/oncall.md)."
                ])  # fmt: skip
        return cls(html=html, links=links, user=user, auth=site.auth, warnings=warnings)

    @property
    def binding(self) -> str:
        """What a form token is bound to besides the alert: the signed-in person, if known."""
        return (self.user or "").casefold()

    @property
    def via(self) -> str:
        return "web, Easy Auth" if self.user else "web, name as typed"

    def page(self, status: int, template: str, view: dict[str, Any]) -> Response:
        view = {"user": self.user, "home_url": self.links.path("alerts"), "warnings": self.warnings, **view}
        return Response(
            status=status, body=render(template, view), content_type=HTML, headers=security_headers()
        )

    def error(self, status: int, title: str, problems: list[str], detail: str = "") -> Response:
        if not self.html:
            payload = {"error": title, "problems": problems, **({"detail": detail} if detail else {})}
            return _json(status, payload)
        view = {
            "title": title, "status": status, "problems": problems, "detail": detail,
            "back_url": self.links.path("alerts"),
        }  # fmt: skip
        return self.page(status, "error.html", view)


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """URLs of this app's pages; each carries the function key when the request had it in the URL."""

    code: str | None = None

    def path(self, route: str, **params: str) -> str:
        query = {**params, **({"code": self.code} if self.code else {})}
        url = f"{ROUTE_PREFIX}/{route}"
        return f"{url}?{urlencode(query)}" if query else url


def _function_key(request: Request) -> str | None:
    """The `code` parameter, if it looks like a key (the host has checked it already)."""
    code = (request.params.get("code") or "").strip()
    return code if _FUNCTION_KEY.match(code) else None


def _filter_params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.params.items() if k not in _PAGE_PARAMS}


def _detection_ids(site: Site) -> list[str]:
    return [d.id for d in site.detections]


def _find(site: Site, alert_id: str) -> tuple[dict[str, Any], Alert] | None:
    return site.history.get(alert_id) if ALERT_ID.match(alert_id) else None


def _form(body: bytes) -> dict[str, str]:
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    return {name: values[-1] for name, values in fields.items() if name in _FORM_FIELDS}


_FORM_FIELDS = ("action", "note", "name", "csrf")


# --------------------------------------------------------------------------- CSRF


def csrf_token(secret: bytes, alert_id: str, binding: str, now: datetime) -> str:
    """A token for the status form of one alert (and one signed-in person), valid TOKEN_MAX_AGE."""
    issued = int(now.timestamp())
    return f"{issued}.{_mac(secret, alert_id, binding, issued)}"


def csrf_valid(secret: bytes, token: str, alert_id: str, binding: str, now: datetime) -> bool:
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = now.timestamp() - issued
    if not -60 <= age <= TOKEN_MAX_AGE.total_seconds():
        return False
    return hmac.compare_digest(mac, _mac(secret, alert_id, binding, issued))


def _mac(secret: bytes, alert_id: str, binding: str, issued: int) -> str:
    message = json.dumps(["alert-status", alert_id, binding, issued]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def cross_site_problem(request: Request, base_url: str | None) -> str | None:
    """Why a state-changing request must be refused as cross-site, or None.

    Browsers send `Sec-Fetch-Site` and `Origin` with form posts; when present they must say
    same-origin (this app's URL, or HISTORY_BASE_URL's). Because the pages are served with
    `Referrer-Policy: no-referrer`, browsers send `Origin: null` even on same-origin form posts
    (Fetch standard): `null` passes only when `Sec-Fetch-Site` says same-origin. A request with
    neither header (curl) still needs the form token.
    """
    fetch_site = request.header("sec-fetch-site").strip().lower()
    if fetch_site and fetch_site != "same-origin":
        return "The request came from another site (Sec-Fetch-Site). Use the form on the alert page."
    origin = request.header("origin").strip()
    if origin == "null":
        if fetch_site != "same-origin":
            return (
                "The request's origin is hidden (Origin: null) and the browser did not say it is same-origin."
            )
    elif origin:
        allowed = {o for o in (_origin(request.url), _origin(base_url or "")) if o}
        if _origin(origin) not in allowed:
            return "The request came from another origin (Origin). Use the form on the alert page."
    return None


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


# --------------------------------------------------------------------------- view models (pure)


def health_view(monitor: Health) -> dict[str, Any]:
    """The monitor's own health as the page shows it: problems first, then the figures."""

    def stamp(value: datetime | None) -> str:
        return _when(value) if value else "never"

    return {
        "problems": problems(monitor),
        "facts": [
            ("Last successful tick", stamp(monitor.last_success_at)),
            ("Last tick", f"{stamp(monitor.last_tick_at)} ({monitor.last_outcome or 'none recorded'})"),
            ("Ticks in a row with failed queries", str(monitor.consecutive_failures)),
            ("Alerts waiting for Teams", str(monitor.outbox_waiting)),
            ("Undeliverable alerts", str(monitor.undeliverable)),
        ],
        "lags": [(d.detection, d.text) for d in monitor.detections],
    }


def list_view(
    filters: Filters,
    rows: Sequence[Mapping[str, Any]],
    next_after: str | None,
    counts: Mapping[str, Counter[str]] | None,
    waivers: Sequence[Any] | None,
    detections: Sequence[Detection],
    links: Links,
    now: datetime,
) -> dict[str, Any]:
    titles = {d.id: d.title for d in detections}
    return {
        "title": "Alert history",
        "filters": {
            "detection": filters.detection or "",
            "severity": filters.severity or "",
            "status": filters.status or "",
            "principal": filters.principal or "",
            "since": filters.since_text,
            "until": filters.until_text,
            "limit": filters.limit,
        },
        "filtered": filters.active,
        "code": links.code,
        "form_action": f"{ROUTE_PREFIX}/alerts",
        "detections": [(d.id, d.title) for d in detections],
        "severities": history.SEVERITIES,
        "statuses": STATUSES,
        "rows": [_list_row(row, titles, links) for row in rows],
        "next_url": links.path("alerts", **filters.params(after=next_after)) if next_after else None,
        "first_url": links.path("alerts", **filters.params()) if filters.after else None,
        "clear_url": links.path("alerts"),
        "json_url": links.path("alerts", **filters.params(after=filters.after), format="json"),
        "chart": chart_view(counts, detections) if counts is not None else None,
        "waivers": None if waivers is None else [_waiver_row(w, now) for w in waivers],
        "audit_url": links.path("waivers/audit"),
    }


def _list_row(row: Mapping[str, Any], titles: Mapping[str, str], links: Links) -> dict[str, Any]:
    summary = history.summary_json(row)
    return {
        **summary,
        "url": links.path(f"alerts/{summary['alert_id']}"),
        "created": _when(row["CreatedAt"]),
        "created_iso": summary["created_at"],
        "detection_title": titles.get(summary["detection"], summary["detection"]),
        "principal_url": links.path("alerts", principal=summary["principal"]),
    }


def alert_view(
    entity: Mapping[str, Any],
    alert: Alert,
    detection: Detection | None,
    links: Links,
    *,
    portal_url: str = AZURE_PORTAL,
    form: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the card showed (facts, events with flagged ones marked, runbook) and more:
    every stored event, the event ids, delivery history and status history."""
    finding = alert.finding
    summary = history.summary_json(entity)
    portal = portal_url.rstrip("/")
    portal_links = [("Entra sign-in logs", portal + SIGN_IN_LOGS), ("Activity Log", portal + ACTIVITY_LOG)]
    if not any(e.source in SIGN_IN_SOURCES for e in finding.events):
        portal_links.reverse()
    delivered_at = entity.get("DeliveredAt")
    listed = {e.event_id for e in finding.events}
    return {
        "title": finding.headline,
        "alert": {
            **summary,
            "created": _when(alert.created_at),
            "detection_title": detection.title if detection else finding.detection,
            "user_id": finding.principal.user_id,
            "user_principal_name": finding.principal.user_principal_name,
            "first": _when(finding.first_time),
            "last": _when(finding.last_time),
            "part": alert.part,
            "parts": alert.parts,
        },
        "facts": list(finding.facts),
        "events": [
            {
                "time": _when(e.time),
                "time_iso": _iso(e.time),
                "source": e.source,
                "fields": list(e.fields),
                "flagged": e.flagged,
                "event_id": e.event_id,
            }
            for e in finding.events
        ],
        "flagged_count": sum(e.flagged for e in finding.events),
        "unlisted_ids": [i for i in finding.event_ids if i not in listed],
        "event_ids": list(finding.event_ids),
        "runbook": list(detection.runbook) if detection else [],
        "description": detection.description if detection else "",
        "false_positives": list(detection.false_positives) if detection else [],
        "delivery": {
            "state": entity.get("Delivery") or "",
            "attempts": entity.get("DeliveryAttempts") or 0,
            "last_error": entity.get("LastDeliveryError") or "",
            "delivered_at": _when(delivered_at) if isinstance(delivered_at, datetime) else "",
            "log": [_log_row(item) for item in reversed(history.delivery_log(entity))],
        },
        "status_history": [_status_row(item) for item in reversed(history.status_history(entity))],
        "portal_links": portal_links,
        "back_url": links.path("alerts"),
        "principal_url": links.path("alerts", principal=finding.principal.label),
        "json_url": links.path(f"alerts/{alert.alert_id}", format="json"),
        "form": form,
    }


def status_form(
    status: str, action_url: str, token: str, *, user: str | None, values: Mapping[str, str], problem: str
) -> dict[str, Any] | None:
    """The acknowledge/resolve form; None when the alert is resolved (nothing left to do)."""
    actions = history.TRANSITIONS.get(status, ())
    if not actions:
        return None
    return {
        "action_url": action_url,
        "csrf": token,
        "can_acknowledge": "acknowledged" in actions,
        "can_resolve": "resolved" in actions,
        "needs_name": user is None,
        "name": values.get("name", ""),
        "note": values.get("note", ""),
        "problem": problem,
    }


def _alert_page(
    site: Site,
    context: _Context,
    entity: Mapping[str, Any],
    alert: Alert,
    *,
    problem: str = "",
    form: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    detection = next((d for d in site.detections if d.id == alert.finding.detection), None)
    token = csrf_token(site.secret(), alert.alert_id, context.binding, site.clock())
    action_url = context.links.path(f"alerts/{alert.alert_id}/status")
    form_view = status_form(
        entity["Status"], action_url, token, user=context.user, values=form or {}, problem=problem
    )
    view = alert_view(entity, alert, detection, context.links, portal_url=site.portal_url, form=form_view)
    if problem and form_view is None:
        view["problem"] = problem
    return view


def chart_view(counts: Mapping[str, Counter[str]], detections: Sequence[Detection]) -> dict[str, Any]:
    """Alerts per day, stacked by detection, as SVG geometry; plus the same numbers as a table."""
    days = list(counts)
    known = [d.id for d in detections]
    extra = sorted({name for c in counts.values() for name in c} - set(known))
    series = known + extra
    totals = [sum(counts[day].values()) for day in days]
    top = _nice_ceiling(max(totals, default=0))
    width, height, left, bottom, top_pad = 640, 180, 36, 22, 8
    plot_h = height - bottom - top_pad
    slot = (width - left) / max(len(days), 1)
    bar_w = max(slot * 0.7, 2)
    bars = []
    for i, day in enumerate(days):
        y = height - bottom
        for j, name in enumerate(series):
            n = counts[day][name]
            if not n:
                continue
            h = n / top * plot_h
            y -= h
            bars.append({
                "x": round(left + i * slot + (slot - bar_w) / 2, 1), "y": round(y, 1),
                "w": round(bar_w, 1), "h": round(h, 1), "css": f"d{j % 6}",
                "label": f"{day}: {n} {name}",
            })  # fmt: skip
    step = max(1, round(len(days) / 7))
    x_labels = [
        {"x": round(left + i * slot + slot / 2, 1), "text": day[5:]}
        for i, day in enumerate(days)
        if i % step == 0
    ]
    y_ticks = [
        {"y": round(height - bottom - value / top * plot_h, 1), "text": str(value)}
        for value in (0, top // 2, top)
    ]
    total = sum(totals)
    busiest = max(range(len(days)), key=lambda i: totals[i]) if days else 0
    desc = f"{total} alerts from {days[0]} to {days[-1]}" if days else "No days"
    if total:
        desc += f"; the busiest day was {days[busiest]} with {totals[busiest]}."
    return {
        "days": len(days),
        "width": width, "height": height, "left": left, "baseline": height - bottom,
        "bars": bars, "x_labels": x_labels, "y_ticks": y_ticks,
        "legend": [{"css": f"d{j % 6}", "name": name} for j, name in enumerate(series)],
        "title": f"Alerts per day by detection, last {len(days)} days (UTC)",
        "desc": desc,
        "table": [{"day": day, "counts": [counts[day][n] for n in series], "total": totals[i]}
                  for i, day in enumerate(days)],
        "series": series,
        "total": total,
    }  # fmt: skip


def _nice_ceiling(value: int) -> int:
    """The smallest of 2, 4, 10, 20, 40, 100, ... that is at least `value` (even: a middle tick)."""
    top = 2
    while top < value:
        top = top * 5 // 2 if str(top).startswith("4") else top * 2
    return top


def _status_row(item: Mapping[str, Any]) -> dict[str, str]:
    return {
        "at": _when_text(item.get("at")),
        "by": str(item.get("by") or ""),
        "change": f"{item.get('from') or '?'} → {item.get('to') or '?'}",
        "note": str(item.get("note") or ""),
        "via": str(item.get("via") or ""),
    }


def _log_row(item: Mapping[str, Any]) -> dict[str, str]:
    return {
        "at": _when_text(item.get("at")),
        "result": str(item.get("result") or ""),
        "error": str(item.get("error") or ""),
    }


def _waiver_row(waiver: Any, now: datetime) -> dict[str, Any]:
    left = waiver.expires_at - now
    return {
        "detection": waiver.detection,
        "principal": waiver.principal,
        "owner": waiver.owner,
        "reason": waiver.reason,
        "approver": waiver.approver,
        "created_by": waiver.created_by,
        "created": _when(waiver.created_at),
        "expires": _when(waiver.expires_at),
        "expires_in": _duration(left) if left > timedelta(0) else "ended",
        "ending_soon": timedelta(0) < left <= timedelta(days=7),
        "state": "active" if waiver.active(now) else ("revoked" if waiver.revoked_at else "expired"),
        "revoked_by": getattr(waiver, "revoked_by", None) or "",
    }


def _waiver_json(waiver: Any, now: datetime) -> dict[str, Any]:
    return {
        "detection": waiver.detection, "principal": waiver.principal, "owner": waiver.owner,
        "reason": waiver.reason, "approver": waiver.approver, "created_by": waiver.created_by,
        "created_at": _iso(waiver.created_at), "expires_at": _iso(waiver.expires_at),
        "revoked_at": _iso(waiver.revoked_at) if waiver.revoked_at else None,
        "revoked_by": waiver.revoked_by, "active": waiver.active(now),
    }  # fmt: skip


def _audit_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    details = entry.get("details") or {}
    return {
        "at": _when(entry["at"]) if isinstance(entry.get("at"), datetime) else _when_text(entry.get("at")),
        "by": str(entry.get("by") or ""),
        "action": str(entry.get("action") or ""),
        "detection": str(entry.get("detection") or ""),
        "principal": str(entry.get("principal") or ""),
        "details": [(str(k), str(v)) for k, v in details.items()] if isinstance(details, dict) else [],
    }


def _duration(left: timedelta) -> str:
    if left >= timedelta(days=2):
        return f"in {left.days} days"
    hours = int(left.total_seconds() // 3600)
    return f"in {hours} hours" if hours >= 1 else "within the hour"


def _when(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when_text(value: Any) -> str:
    try:
        return _when(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value or "")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- rendering


@cache
def _stylesheet() -> tuple[str, str]:
    css = (TEMPLATES / "history.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def security_headers() -> dict[str, str]:
    _, style_hash = _stylesheet()
    return {
        # No script at all; the one stylesheet is inline and allowed by its hash.
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash}; img-src data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Vary": "Accept",
    }


def _visible(value: Any) -> Any:
    """Jinja's finalize: controls and bidi overrides in text become visible marks, not behaviour."""
    from markupsafe import Markup

    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    if not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ord(ch) in _DISGUISING for ch in value):
        return value
    return "".join(
        f"[U+{ord(ch):04X}]" if (ord(ch) < 32 and ch not in "\n\t") or 0x7F <= ord(ch) < 0xA0
        or ord(ch) in _DISGUISING else ch
        for ch in value
    )  # fmt: skip


@cache
def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        finalize=_visible,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return env


def render(template: str, view: Mapping[str, Any]) -> str:
    from markupsafe import Markup

    css, _ = _stylesheet()
    return _environment().get_template(template).render(**view, css=Markup(css))  # noqa: S704 (our file)


def _json(status: int, payload: Any) -> Response:
    return Response(status=status, body=json.dumps(payload), content_type=JSON, headers=security_headers())
