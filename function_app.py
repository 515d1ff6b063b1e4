"""Azure Functions entry points. Triggers only: each builds services and calls one function.

Settings are validated here, when the host loads the app, so a bad setting stops start-up
with a message naming it instead of failing on the first tick.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

import azure.functions as func

from monitors.settings import load_settings

if TYPE_CHECKING:  # imported lazily at run time: keeps SDKs out of the host's indexing path
    from monitors.history import Response
    from monitors.tick import Services
    from monitors.web import Request, Site

SETTINGS = load_settings(os.environ)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@cache
def _services() -> Services:
    from monitors.bootstrap import build_services

    return build_services(SETTINGS)


@app.timer_trigger(schedule="%MONITOR_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def monitor_tick(timer: func.TimerRequest) -> None:
    from monitors.bootstrap import tick

    tick(_services())


# --- alert history for on-call (monitors/web.py): pages for browsers, JSON for API clients


@app.route(route="alerts", methods=["GET"])
def alert_history(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_list

    return _http(alert_list(_site(), _request(req)))


@app.route(route="alerts/{alert_id}", methods=["GET"])
def alert_detail(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_detail as detail

    return _http(detail(_site(), _request(req)))


@app.route(route="alerts/{alert_id}/status", methods=["POST"])
def alert_status(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_status as change_status

    return _http(change_status(_site(), _request(req)))


@app.route(route="waivers/audit", methods=["GET"])
def waiver_audit(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import waiver_audit as audit

    return _http(audit(_site(), _request(req)))


@cache
def _site() -> Site:
    from monitors.history_store import HistoryStore
    from monitors.waivers import WaiverBook
    from monitors.web import Site, StoredSecret

    store = _services().store
    return Site(
        history=HistoryStore(store), secret=StoredSecret(store), waivers=WaiverBook(store),
        auth=SETTINGS.history_auth, portal_url=SETTINGS.portal_url, base_url=SETTINGS.history_base_url,
    )  # fmt: skip


def _request(req: func.HttpRequest) -> Request:
    from monitors.web import Request

    return Request(
        method=req.method, url=req.url, params=dict(req.params), route_params=dict(req.route_params),
        headers={name.lower(): value for name, value in req.headers.items()}, body=req.get_body() or b"",
    )  # fmt: skip


def _http(response: Response) -> func.HttpResponse:
    mimetype, _, _ = response.content_type.partition(";")
    return func.HttpResponse(
        response.body, status_code=response.status, headers=dict(response.headers), mimetype=mimetype
    )
