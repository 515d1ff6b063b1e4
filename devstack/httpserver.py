"""Shared plumbing for the devstack's small HTTP(S) servers."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from devstack.certs import CertPaths, ensure_certs


class JsonHandler(BaseHTTPRequestHandler):
    """Base handler with JSON helpers; subclasses implement do_GET/do_POST."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the services log what matters themselves; keep test output readable

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_bytes(status, body, "application/json; charset=utf-8", headers)

    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def make_server(
    handler: type[BaseHTTPRequestHandler], host: str, port: int, certs: CertPaths | None
) -> ThreadingHTTPServer:
    """Bind a threading server; wrap it in TLS when certificates are given."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if certs is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certs.cert), str(certs.key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name=type(server).__name__, daemon=True)
    thread.start()
    return thread


class HttpsService:
    """Lifecycle shared by the devstack's HTTPS servers: bind, serve in a thread, stop.

    Subclasses set `host`, `port` and `state_dir`, and call `_listen(handler)` from `start()`.
    """

    host: str
    port: int
    state_dir: Path
    ca_path: Path
    _server: ThreadingHTTPServer | None = None

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        certs = ensure_certs(self.state_dir)
        self.ca_path = certs.ca
        self._server = make_server(handler, self.host, self.port, certs)
        self.port = self._server.server_address[1]
        serve_in_thread(self._server)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"
