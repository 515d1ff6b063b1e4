"""Azure Functions entry points. Triggers only: each builds services and calls one function.

Settings are validated here, when the host loads the app, so a bad setting stops start-up
with a message naming it instead of failing on the first tick.
"""

import os
from functools import cache

import azure.functions as func

from monitors.settings import load_settings

SETTINGS = load_settings(os.environ)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@cache
def _services():
    from monitors.bootstrap import build_services

    return build_services(SETTINGS)


@app.timer_trigger(schedule="%MONITOR_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def monitor_tick(timer: func.TimerRequest) -> None:
    from monitors.bootstrap import tick

    tick(_services())
