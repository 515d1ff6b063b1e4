"""A fresh worker's first HTTP response: `python -m bench.coldstart_child [ROUTE [ACCEPT]]`.

Imports function_app (as the host does when it loads the app), then calls the HTTP function of
ROUTE (default `alerts`) twice through the function code, with an azure.functions.HttpRequest
whose Accept header is ACCEPT (default `application/json`; `text/html` is what a browser sends
and gets the history page, where the app has one). Prints one JSON line: the routes the app
declares and, per call, seconds, status, content type and size. Settings come from the environment.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402 - the clock starts before anything is imported
import sys  # noqa: E402

import function_app  # noqa: E402

_IMPORTED = time.perf_counter()
FUNCTIONS = function_app.app.get_functions()  # a second call raises (azure-functions re-validates)


def routes() -> list[dict[str, object]]:
    found = []
    for function in FUNCTIONS:
        trigger = function.get_trigger()
        route = getattr(trigger, "route", None)
        if route is None:
            continue
        methods = [str(getattr(m, "value", m)) for m in (getattr(trigger, "methods", None) or [])]
        found.append({"function": function.get_function_name(), "route": route, "methods": methods})
    return found


def main() -> int:
    import azure.functions as func

    declared = routes()
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    accept = sys.argv[2] if len(sys.argv) > 2 else "application/json"
    plain = [
        r for r in declared if "{" not in str(r["route"]) and (not r["methods"] or "GET" in r["methods"])
    ]
    chosen = next((r for r in plain if r["route"] == wanted), None) if wanted else None
    if chosen is None:
        chosen = next((r for r in plain if r["route"] == "alerts"), plain[0] if plain else None)
    calls = []
    if chosen is not None:
        (function,) = [f for f in FUNCTIONS if f.get_function_name() == chosen["function"]]
        handler = function.get_user_function()
        for _ in range(2):
            began = time.perf_counter()
            request = func.HttpRequest(
                method="GET",
                url=f"https://localhost/api/{chosen['route']}",
                params={},
                body=b"",
                headers={"Accept": accept},
            )
            response = handler(request)
            calls.append(
                {
                    "seconds": round(time.perf_counter() - began, 4),
                    "status": response.status_code,
                    "content_type": response.mimetype,
                    "bytes": len(response.get_body()),
                }
            )
    print(
        json.dumps(
            {
                "import_s": round(_IMPORTED - _T0, 4),
                "routes": declared,
                "route": chosen,
                "accept": accept,
                "calls": calls,
                "first_response_after_start_s": round(
                    _IMPORTED - _T0 + (calls[0]["seconds"] if calls else 0), 4
                ),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
