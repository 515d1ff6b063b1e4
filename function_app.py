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


@app.route(route="alerts", methods=["GET"])
def alert_history(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.history import list_alerts
    from monitors.history_store import HistoryStore

    return _http(list_alerts(HistoryStore(_services().store), req.params.get("limit")))


@app.route(route="alerts/{alert_id}", methods=["GET"])
def alert_detail(req: func.HttpRequest) -> func.HttpResponse:
    from monitors.history import get_alert
    from monitors.history_store import HistoryStore

    return _http(get_alert(HistoryStore(_services().store), req.route_params.get("alert_id", "")))


def _http(response: Response) -> func.HttpResponse:
    return func.HttpResponse(
        response.body, status_code=response.status, mimetype=response.content_type.split(";")[0]
    )
