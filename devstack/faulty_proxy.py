"""A fault-injecting HTTPS reverse proxy for Azurite's Table service (reliability tests only).

Point `STATE_TABLE_ENDPOINT` at `proxy.table_endpoint` instead of Azurite's: every request is
forwarded byte for byte (same path, headers and body; only `Host` changes), unless a fault
matches it. Faults apply to the next `count` requests that match a method and/or a path
fragment (a table name such as `mfamonwatermarks`), optionally after letting `skip` of them
through. A batch (`POST /$batch`) matches by its own method and path or by any request inside
it (`PUT .../alerts(PartitionKey='alert',...)`); `guarded_only` faults match only ETag-guarded
requests (`If-Match` an ETag: a replace after a read, never a batch or an upsert); `row_key`
faults only requests for that row (named in the path, or in the body of an insert), so a fault
meant for one entity does not hit another in the same table first:

- "500", "503": answered in Table Storage's error shape without forwarding (nothing was written);
- "500-after": forwarded, then answered 500 (the write happened, its answer was lost);
- "stall": held for `delay` seconds, then the connection is reset (a timeout; nothing written);
- "stall-after": forwarded, held, then reset (a timeout after the write happened);
- "drop": the connection is reset at once (nothing written).

`on_request` callbacks see every request before it is forwarded (e.g. to restart Azurite at a
chosen moment). Requests and their outcomes are recorded in `log`.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from devstack.azurite import ACCOUNT
from devstack.httpserver import HttpsService, JsonHandler

FAULT_MODES = frozenset({"500", "503", "500-after", "stall", "stall-after", "drop"})
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "host"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "MERGE", "OPTIONS")
_MESSAGES = {
    "500": ("InternalError", "Server encountered an internal error. Please try again after some time."),
    "503": ("ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
}


@dataclass(slots=True)
class ProxyFault:
    mode: str
    count: int = 1
    method: str | None = None  # e.g. "POST" (inserts, batches), "PUT"/"PATCH"/"MERGE", "DELETE", "GET"
    match: str | None = None  # a fragment of the path, e.g. a table name
    skip: int = 0  # matching requests let through first
    delay: float = 2.0
    guarded_only: bool = False  # only a request with If-Match: an ETag
    row_key: str | None = None  # only a request for this row

    def matches(
        self, method: str, path: str, inner: list[tuple[str, str]], guarded: bool, body: bytes = b""
    ) -> bool:
        """`inner`: (method, path) of each request inside a batch; empty for a single request."""
        if self.guarded_only and not guarded:
            return False
        if self.row_key is not None and not _names_row(self.row_key, [path, *(p for _, p in inner)], body):
            return False
        return any(
            (self.method is None or self.method == m) and (self.match is None or self.match in p)
            for m, p in [(method, path), *inner]
        )


_INNER_REQUEST = re.compile(rb"^(GET|POST|PUT|PATCH|MERGE|DELETE) https?://[^/\s]+(\S*) HTTP/1\.1\r?$", re.M)


def _names_row(row_key: str, paths: list[str], body: bytes) -> bool:
    """A path addresses the row (`...(PartitionKey='p',RowKey='r')`) or the body inserts it."""
    in_path = f"RowKey='{row_key}'"
    in_body = re.compile(rb'"RowKey":\s*"' + re.escape(row_key.encode()) + rb'"')
    return any(in_path in path for path in paths) or in_body.search(body) is not None


def batch_requests(body: bytes) -> list[tuple[str, str]]:
    """(method, path) of each request inside a `$batch` body (multipart/mixed changesets)."""
    return [(m.decode(), unquote(p.decode())) for m, p in _INNER_REQUEST.findall(body)]


@dataclass(frozen=True, slots=True)
class ProxyRecord:
    method: str
    path: str
    outcome: str  # "forwarded", "fault:<mode>", "upstream-error"
    status: int | None


class FaultyProxy(HttpsService):
    def __init__(
        self,
        upstream_port: int,
        state_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        upstream_timeout_s: float = 30.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.upstream_timeout_s = upstream_timeout_s
        self.ca_path = self.state_dir / "certs" / "ca.pem"
        self._faults: list[ProxyFault] = []
        self._lock = threading.Lock()
        self.log: list[ProxyRecord] = []
        self.on_request: list[Callable[[str, str], None]] = []

    def start(self) -> Self:
        self._listen(type("FaultyProxyHandler", (_Handler,), {"proxy": self}))
        self._context = ssl.create_default_context(cafile=str(self.ca_path))
        return self

    @property
    def table_endpoint(self) -> str:
        return f"{self.url}/{ACCOUNT}"

    # faults

    def add_fault(
        self,
        mode: str,
        count: int = 1,
        *,
        method: str | None = None,
        match: str | None = None,
        skip: int = 0,
        delay: float = 2.0,
        guarded_only: bool = False,
        row_key: str | None = None,
    ) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        if count < 1 or skip < 0:
            raise ValueError("count must be at least 1 and skip not negative")
        with self._lock:
            fault = ProxyFault(
                mode, count, method and method.upper(), match, skip, delay, guarded_only, row_key
            )
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.count for f in self._faults)

    def injected(self) -> list[ProxyRecord]:
        with self._lock:
            return [r for r in self.log if r.outcome.startswith("fault:")]

    def _take_fault(self, method: str, path: str, body: bytes, if_match: str) -> ProxyFault | None:
        inner = batch_requests(body) if path.endswith("/$batch") else []
        guarded = if_match not in ("", "*")
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path, inner, guarded, body):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return ProxyFault(fault.mode, 1, fault.method, fault.match, 0, fault.delay)
        return None

    def _record(self, method: str, path: str, outcome: str, status: int | None) -> None:
        with self._lock:
            self.log.append(ProxyRecord(method, path, outcome, status))

    # forwarding

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.upstream_port, context=self._context, timeout=self.upstream_timeout_s
        )
        try:
            sent = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", f"127.0.0.1:{self.upstream_port}")
            for name, value in sent:
                if name.lower() != "content-length":
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            payload = response.read()
            kept = [
                (k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}
            ]
            return response.status, response.reason, kept, payload
        finally:
            connection.close()


class _Handler(JsonHandler):
    proxy: FaultyProxy

    def _handle(self) -> None:
        method = self.command
        path = self.path
        body = self._body()
        for callback in list(self.proxy.on_request):
            callback(method, path)
        if_match = self.headers.get("If-Match", "")
        fault = self.proxy._take_fault(method, unquote(urlsplit(path).path), body, if_match)
        if fault is not None and fault.mode in ("500", "503", "stall", "drop"):
            self.proxy._record(method, path, f"fault:{fault.mode}", None)
            self._fault(fault)
            return
        try:
            status, reason, headers, payload = self.proxy.forward(
                method, path, list(self.headers.items()), body
            )
        except (OSError, http.client.HTTPException):
            self.proxy._record(method, path, "upstream-error", None)
            self._reset()  # Azurite is down: the client sees what it would see without the proxy
            return
        if fault is not None:  # "500-after" / "stall-after": the upstream did the work
            self.proxy._record(method, path, f"fault:{fault.mode}", status)
            self._fault(fault)
            return
        self.proxy._record(method, path, "forwarded", status)
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if method != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD" and payload:
            self.wfile.write(payload)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.read_body()

    def _fault(self, fault: ProxyFault) -> None:
        if fault.mode in ("stall", "stall-after"):
            time.sleep(fault.delay)
            self._reset()
        elif fault.mode == "drop":
            self._reset()
        else:
            status = 503 if fault.mode == "503" else 500
            code, message = _MESSAGES[str(status)]
            stamp = datetime.now(UTC).isoformat()
            value = f"{message}\nRequestId:{uuid.uuid4()}\nTime:{stamp}"
            self.send_json(
                status,
                {"odata.error": {"code": code, "message": {"lang": "en-US", "value": value}}},
                {"x-ms-error-code": code},
            )

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


for _method in _METHODS:
    setattr(_Handler, f"do_{_method}", _Handler._handle)
