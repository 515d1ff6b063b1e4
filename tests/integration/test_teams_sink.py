"""The local Teams Workflows webhook: it must refuse what Teams refuses, over real HTTPS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.teams_sink import MAX_BODY_BYTES, TeamsSink, validate_card, validate_message

REPO = Path(__file__).resolve().parents[2]


def card(*body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "AdaptiveCard", "version": "1.5", "body": list(body), **extra}


def envelope(content: dict[str, Any]) -> dict[str, Any]:
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None}
    return {"type": "message", "attachments": [{**attachment, "content": content}]}


def text(value: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": value, "wrap": True}


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamsSink]:
    with TeamsSink(tmp_path_factory.mktemp("teams"), signatures={"secured": "s3cret"}) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(sink: TeamsSink) -> None:
    sink.clear()
    sink.clear_faults()


def post(sink: TeamsSink, payload: Any, name: str = "oncall", sig: str = "devsig") -> requests.Response:
    return requests.post(sink.webhook_url(name, sig), json=payload, verify=str(sink.ca_path), timeout=10)


# --- validation without HTTP


def test_minimal_card_is_valid() -> None:
    assert validate_card(card(text("hello"))) == []
    assert validate_message(json.dumps(envelope(card(text("hello")))).encode()) == []


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (card({"type": "Foo", "text": "x"}), "unknown type 'Foo'"),
        (card({"text": "x"}), "element has no 'type'"),
        (card(text("x"), version="1.6"), "1.6 is above 1.5"),
        (card(text("x"), version=1.5), "must be a string"),
        ({"body": [text("x")]}, "must be 'AdaptiveCard'"),
        (card({"type": "TextBlock", "text": "x", "colour": "red"}), "'colour' was unexpected"),
        (card({"type": "FactSet", "facts": [{"title": "Host"}]}), "facts[0]: 'value' is a required property"),
        (card({"type": "TextBlock", "text": "x", "weight": "heavy"}), "'heavy' is not one of"),
        (card({"type": "TextBlock", "text": "x", "fallback": {"type": "Nope"}}), "unknown type 'Nope'"),
        (card(actions=[{"type": "Action.OpenUrl", "title": "Open"}]), "actions[0]: 'url' is a required"),
    ],
)
def test_invalid_cards_name_the_problem(bad: dict[str, Any], expected: str) -> None:
    errors = validate_card(bad)
    assert any(expected in error for error in errors), errors


def test_schema_quirks_do_not_reject_valid_cards() -> None:
    """msteams is stripped; the schema's misspelt "rtl?" and case-insensitive enums still pass."""
    valid = card(
        {"type": "Container", "rtl": False, "items": [text("x")]},
        {"type": "TextBlock", "text": "y", "weight": "bolder", "color": "Attention", "fallback": "drop"},
        msteams={"width": "Full"},
    )
    assert validate_card(valid) == []


def test_submit_hidden_in_a_show_card_is_found() -> None:
    inner = {"type": "AdaptiveCard", "body": [], "actions": [{"type": "Action.Submit", "title": "Ack"}]}
    errors = validate_card(card(actions=[{"type": "Action.ShowCard", "title": "More", "card": inner}]))
    assert len(errors) == 1
    assert errors[0].startswith("card.actions[0].card.actions[0]: Action.Submit is not supported")


# --- the webhook over HTTPS


def test_valid_card_is_accepted_with_202_and_recorded(sink: TeamsSink) -> None:
    content = card(text("Break-glass sign-in"), msteams={"width": "Full"})
    response = post(sink, envelope(content))
    assert response.status_code == 202
    assert response.content == b""
    [message] = sink.messages("oncall")
    assert message["card"] == content
    assert message["size"] == len(response.request.body)
    assert message["received_at"].endswith("Z")
    assert message["headers"]["Content-Type"] == "application/json"
    assert sink.messages("other") == []
    listed = requests.get(f"{sink.url}/messages?name=oncall", verify=str(sink.ca_path), timeout=10).json()
    assert listed == [message]


def test_bare_text_payload_fails_like_the_default_flow(sink: TeamsSink) -> None:
    response = post(sink, {"text": "hello"})
    assert response.status_code == 400
    assert "retired connector format" in response.json()["error"]["message"]
    assert sink.messages() == []
    [rejected] = sink.rejected()
    assert rejected["status"] == 400
    assert "attachments" in rejected["errors"][0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (card(text("x"), version="1.6"), "above 1.5"),
        (card(actions=[{"type": "Action.Submit", "title": "Ack"}]), "Action.Submit is not supported"),
        (card(actions=[{"type": "Action.Execute", "verb": "ack"}]), "Action.Execute is not supported"),
        (card({"type": "Foo"}), "unknown type 'Foo'"),
        (card({"type": "FactSet", "facts": [{"title": "Host", "value": 3}]}), "3 is not of type 'string'"),
    ],
)
def test_invalid_cards_are_rejected_with_the_reason(
    sink: TeamsSink, content: dict[str, Any], expected: str
) -> None:
    response = post(sink, envelope(content))
    assert response.status_code == 400
    assert any(expected in detail for detail in response.json()["error"]["details"])
    assert sink.messages() == []
    assert any(expected in error for error in sink.rejected()[0]["errors"])


def test_non_json_content_type_is_rejected(sink: TeamsSink) -> None:
    body = json.dumps(envelope(card(text("x"))))
    response = requests.post(
        sink.webhook_url("oncall"),
        data=body,
        headers={"Content-Type": "text/plain"},
        verify=str(sink.ca_path),
        timeout=10,
    )
    assert response.status_code == 400


def test_28_kb_is_the_limit(sink: TeamsSink) -> None:
    def body_of(size: int) -> bytes:
        padding = size - len(json.dumps(envelope(card(text("")))).encode())
        return json.dumps(envelope(card(text("x" * padding)))).encode()

    def send(body: bytes) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        return requests.post(
            sink.webhook_url("oncall"), data=body, headers=headers, verify=str(sink.ca_path), timeout=10
        )

    assert send(body_of(MAX_BODY_BYTES)).status_code == 202
    too_big = send(body_of(MAX_BODY_BYTES + 1))
    assert too_big.status_code == 413
    assert "28 KB" in too_big.json()["error"]["message"]
    assert [a["outcome"] for a in sink.attempts()] == ["accepted", "too_large"]
    assert len(sink.messages()) == 1


def test_429_fault_sends_retry_after_then_recovers(sink: TeamsSink) -> None:
    sink.set_fault("429", name="oncall", count=2, retry_after=7)
    payload = envelope(card(text("x")))
    first, second, third = (post(sink, payload) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 202)
    assert first.headers["Retry-After"] == "7"
    assert len(sink.messages()) == 1
    assert [a["outcome"] for a in sink.attempts()] == ["fault:429", "fault:429", "accepted"]


def test_fault_for_one_webhook_leaves_the_others_alone(sink: TeamsSink) -> None:
    sink.set_fault("503", name="oncall")
    payload = envelope(card(text("x")))
    assert post(sink, payload, name="oncall").status_code == 503
    assert post(sink, payload, name="audit").status_code == 202
    assert post(sink, payload, name="oncall").status_code == 503  # no count: until reset


def test_faults_through_the_admin_endpoint(sink: TeamsSink) -> None:
    admin = f"{sink.url}/admin/faults"
    verify = str(sink.ca_path)
    assert requests.post(admin, json={"mode": "500"}, verify=verify, timeout=10).status_code == 200
    assert post(sink, envelope(card(text("x"))), name="any").status_code == 500
    assert requests.post(admin, json={"mode": "bogus"}, verify=verify, timeout=10).status_code == 400
    assert requests.delete(admin, verify=verify, timeout=10).status_code == 204
    assert post(sink, envelope(card(text("x"))), name="any").status_code == 202


def test_slow_mode_delays_the_answer(sink: TeamsSink) -> None:
    sink.set_fault("slow", delay=0.6, count=1)
    started = time.monotonic()
    response = post(sink, envelope(card(text("x"))))
    assert response.status_code == 202
    assert time.monotonic() - started >= 0.6
    assert sink.messages()[0]["name"] == "oncall"  # slow is not a failure


def test_down_mode_resets_the_connection(sink: TeamsSink) -> None:
    sink.set_fault("down", count=1)
    with pytest.raises(requests.ConnectionError):
        post(sink, envelope(card(text("x"))))
    assert post(sink, envelope(card(text("x")))).status_code == 202
    assert [a["outcome"] for a in sink.attempts()] == ["fault:down", "accepted"]


def test_wrong_sig_is_refused_when_one_is_configured(sink: TeamsSink) -> None:
    payload = envelope(card(text("x")))
    assert post(sink, payload, name="secured", sig="wrong").status_code == 401
    assert post(sink, payload, name="secured", sig="s3cret").status_code == 202
    assert post(sink, payload, name="open", sig="anything").status_code == 202
    assert [a["sig_ok"] for a in sink.attempts()] == [False, True, None]
    assert [m["name"] for m in sink.messages()] == ["secured", "open"]


def test_lenient_mode_answers_202_but_records_the_rejection(tmp_path: Path) -> None:
    with TeamsSink(tmp_path, reject_invalid=False) as lenient:
        response = post(lenient, {"text": "hello"})
        assert response.status_code == 202
        assert lenient.messages() == []
        assert lenient.rejected()[0]["status"] == 202


def test_page_renders_cards_escaped(sink: TeamsSink) -> None:
    facts = {"type": "FactSet", "facts": [{"title": "User", "value": "<b>eve</b>"}]}
    post(sink, envelope(card(text("<script>alert(1)</script>"), facts)))
    post(sink, {"text": "<img src=x>"})
    page = requests.get(sink.url, verify=str(sink.ca_path), timeout=10).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;eve&lt;/b&gt;" in page
    assert "<script>" not in page
    assert "Rejected (1)" in page


def test_delete_messages_clears_everything(sink: TeamsSink) -> None:
    post(sink, envelope(card(text("x"))))
    response = requests.delete(f"{sink.url}/messages", verify=str(sink.ca_path), timeout=10)
    assert response.status_code == 204
    assert sink.messages() == []
    assert requests.get(f"{sink.url}/attempts", verify=str(sink.ca_path), timeout=10).json() == []


def test_runs_as_a_module_and_says_ready(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "devstack.teams_sink", "--port", "0", "--state-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("ready https://127.0.0.1:")
        url = line.removeprefix("ready ")
        ca = tmp_path / "certs" / "ca.pem"
        assert requests.get(f"{url}/healthz", verify=str(ca), timeout=10).json() == {"status": "ok"}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
