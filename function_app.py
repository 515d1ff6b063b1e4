"""Azure Functions entry points. Triggers only: each builds services and calls one function.

Settings are read and validated when a function first runs, never at import: an import that
raises leaves the worker with no functions at all (no timer, no history page), and since the
app is its own only alert channel nothing would say so. Instead a bad setting fails every
tick with an ERROR line naming it (the platform records each failed run, which a watchdog
alert rule counts) and the history routes answer 503 with the same message.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:  # imported lazily at run time: keeps SDKs out of the host's indexing path
    from collections.abc import Callable

    from monitors.history import Response
    from monitors.settings import Settings
    from monitors.tick import Services
    from monitors.web import Request, Site

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("function_app")


@cache
def _settings() -> Settings:
    # A SettingsError is not cached: each run reads the environment again and says so again.
    from monitors.settings import load_settings

    return load_settings(os.environ)


@cache
def _services() -> Services:
    from monitors.bootstrap import build_services

    return build_services(_settings())


@app.timer_trigger(schedule="%MONITOR_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def monitor_tick(timer: func.TimerRequest) -> None:
    from monitors.bootstrap import tick
    from monitors.settings import SettingsError

    try:
        services = _services()
    except SettingsError as error:
        for problem in error.problems:
            log.error("The monitor is not running: bad app setting: %s", problem)
        raise  # the run fails: the platform records it
    tick(services)


# --- alert history for on-call (monitors/web.py): pages for browsers, JSON for API clients


@app.route(route="alerts", methods=["GET"])
def alert_history(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_list

    return _serve(alert_list, req)


@app.route(route="alerts/{alert_id}", methods=["GET"])
def alert_detail(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_detail as detail

    return _serve(detail, req)


@app.route(route="alerts/{alert_id}/status", methods=["POST"])
def alert_status(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import alert_status as change_status

    return _serve(change_status, req)


@app.route(route="waivers/audit", methods=["GET"])
def waiver_audit(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.web import waiver_audit as audit

    return _serve(audit, req)


def _serve(handler: Callable[[Site, Request], Response], req: func.HttpRequest) -> func.HttpResponse:
    from monitors.settings import SettingsError
    from monitors.web import settings_unavailable

    request = _request(req)
    try:
        site = _site()
    except SettingsError as error:  # the page says why nothing is watched, instead of a bare 500
        return _http(settings_unavailable(request, error.problems))
    return _http(handler(site, request))


@cache
def _site() -> Site:
    from monitors import health
    from monitors.detections import enabled
    from monitors.history_store import HistoryStore
    from monitors.waivers import WaiverBook
    from monitors.web import Site, StoredSecret

    settings = _settings()
    store = _services().store
    watched = enabled(settings.disabled_detections)
    return Site(
        history=HistoryStore(store), secret=StoredSecret(store), waivers=WaiverBook(store),
        auth=settings.history_auth, portal_url=settings.portal_url, base_url=settings.history_base_url,
        warnings=settings.warnings,
        health=lambda now: health.read(store, settings.workspace_id, watched, now),
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
