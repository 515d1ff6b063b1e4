"""A small stand-in for the Azure Functions host: serves the app's HTTP-triggered functions.

It does what the host does between a browser and the user function, and nothing more:
- routes: `/api/<route>` from each function's `route` template (`{name}`, `{name?}`,
  `{name:constraint}` and `{*rest}`), case-insensitive, restricted to the function's methods;
- keys: a function or admin auth level needs the host key (generated at start) in the
  `x-functions-key` header or the `code` query parameter, else 401; anonymous needs none;
- the request: `azure.functions.HttpRequest(method, url, headers, params, route_params, body)`
  with the query as the host passes it (empty values dropped, repeated names comma-joined);
- the response: status, headers and body of the returned `HttpResponse`; an exception is a 500.

Headers are passed through unchanged, X-MS-CLIENT-PRINCIPAL-NAME included: that is what a
deployment without Easy Auth does (anyone can send it), and what lets tests emulate Easy Auth.
Served over HTTPS with the devstack's CA, like the other devstack services.

    python -m devstack.functions_host --state-dir .devstack   # after `source .devstack/env`
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib
import json
import logging
import re
import secrets
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.httpserver import HttpsService, JsonHandler

ROUTE_PREFIX = "/api"
MAX_BODY_BYTES = 10 * 1024 * 1024
log = logging.getLogger("devstack.functions_host")


@dataclass(frozen=True, slots=True)
class HttpFunction:
    name: str
    route: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str  # ANONYMOUS, FUNCTION or ADMIN
    arg_name: str
    call: Any


def route_pattern(template: str) -> re.Pattern[str]:
    """A route template as a regex over the path after /api/ (ASP.NET-style, case-insensitive)."""
    parts = []
    for segment in template.strip("/").split("/"):
        match = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}", segment)
        if match is None:
            parts.append(("/" if parts else "") + re.escape(segment))
            continue
        catch_all, name, optional = match.groups()
        body = f"(?P<{name}>.+)" if catch_all else f"(?P<{name}>[^/]+)"
        slash = "/" if parts else ""
        parts.append(f"(?:{slash}{body})?" if optional or catch_all else slash + body)
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)


def http_functions(app: Any) -> list[HttpFunction]:
    """The HTTP-triggered functions of a FunctionApp (or of the list its get_functions() returned,
    which may be called only once per app), from their function.json."""
    found = []
    for function in app.get_functions() if hasattr(app, "get_functions") else app:
        bindings = json.loads(function.get_function_json())["bindings"]
        trigger = next((b for b in bindings if b.get("type") == "httpTrigger"), None)
        if trigger is None:
            continue
        route = trigger.get("route") or function.get_function_name()
        methods = trigger.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        found.append(
            HttpFunction(
                name=function.get_function_name(),
                route=route,
                pattern=route_pattern(route),
                methods=frozenset(str(m).upper() for m in methods),
                auth_level=str(trigger.get("authLevel") or "FUNCTION").upper(),
                arg_name=trigger["name"],
                call=function.get_user_function(),
            )
        )
    # Like ASP.NET routing: literal segments win over parameters, parameters over catch-alls.
    return sorted(found, key=lambda f: [_precedence(seg) for seg in f.route.strip("/").split("/")])


def _precedence(segment: str) -> int:
    return 2 if segment.startswith("{*") else 1 if segment.startswith("{") else 0


class FunctionsHost(HttpsService):
    """Serves `app`'s HTTP functions on https://127.0.0.1:<port>/api/...; `key` opens them.

    `app`: a FunctionApp, or the functions its get_functions() returned.
    """

    def __init__(self, app: Any, state_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.functions = http_functions(app)
        self.state_dir = state_dir
        self.host, self.port = host, port
        self.key = secrets.token_urlsafe(32)  # the host's default function key
        self.master_key = secrets.token_urlsafe(32)
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for tests
        self._lock = threading.Lock()

    def start(self) -> FunctionsHost:
        self._listen(self._handler())
        return self

    def url_for(self, route: str, with_key: bool = False) -> str:
        url = f"{self.url}{ROUTE_PREFIX}/{route.lstrip('/')}"
        return f"{url}{'&' if '?' in url else '?'}code={self.key}" if with_key else url

    # --- the host's decisions, pure enough to test without a socket

    def match(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        if not path.lower().startswith(ROUTE_PREFIX + "/"):
            return None
        rest = path[len(ROUTE_PREFIX) + 1 :]
        for function in self.functions:
            found = function.pattern.match(rest)
            if found and method.upper() in function.methods:
                params = {k: v for k, v in found.groupdict().items() if v is not None}
                return function, params
        return None

    def authorized(self, function: HttpFunction, headers: dict[str, str], query: dict[str, str]) -> bool:
        if function.auth_level == "ANONYMOUS":
            return True
        given = headers.get("x-functions-key") or query.get("code") or ""
        keys = [self.master_key] if function.auth_level == "ADMIN" else [self.key, self.master_key]
        return any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _handler(self) -> type[JsonHandler]:
        host = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def do_DELETE(self) -> None:
                self._serve()

            def do_PATCH(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

            def _serve(self) -> None:
                import azure.functions as func

                split = urlsplit(self.path)
                method = self.command.upper()
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(413, b"", {}, method, split.path)
                    return
                body = self.rfile.read(length) if length else b""
                matched = host.match(method, split.path)
                if matched is None:
                    self._answer(404, b"", {}, method, split.path)
                    return
                function, route_params = matched
                query = _host_query(split.query)
                headers = {name.lower(): value for name, value in self.headers.items()}
                if not host.authorized(function, headers, query):
                    self._answer(401, b"", {}, method, split.path)
                    return
                request = func.HttpRequest(
                    method=method,
                    url=f"{host.url}{self.path}",
                    headers=headers,
                    params=query,
                    route_params=route_params,
                    body=body,
                )
                try:
                    response = function.call(**{function.arg_name: request})
                except Exception:
                    log.error("function %s failed:\n%s", function.name, traceback.format_exc())
                    self._answer(500, b"", {}, method, split.path)
                    return
                out_headers = dict(response.headers.items())
                if not any(k.lower() == "content-type" for k in out_headers):
                    out_headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
                self._answer(
                    response.status_code, response.get_body() or b"", out_headers, method, split.path
                )

            def _answer(
                self, status: int, body: bytes, headers: dict[str, str], method: str, path: str
            ) -> None:
                host._record(method, path, status)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

        return Handler


def _host_query(query: str) -> dict[str, str]:
    """The query as the Functions host hands it to a worker: empty values dropped, repeats comma-joined."""
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    joined = {name: ",".join(v for v in vs if v) for name, vs in values.items()}
    return {name: value for name, value in joined.items() if value}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.functions_host", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".devstack"), help="where the devstack CA lives"
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    app = importlib.import_module("function_app").app  # settings are read on the first request
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FunctionsHost(app, args.state_dir, port=args.port) as host:
        print(f"functions host up: {host.url_for('alerts', with_key=True)}  (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
