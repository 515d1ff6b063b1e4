"""The app's own code path (settings -> bootstrap -> SDK clients) against the devstack."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest
from azure.functions import HttpRequest
from azure.functions.timer import TimerRequest
from azure.identity import ManagedIdentityCredential

from devstack.identity import verify_token
from devstack.stack import Devstack
from monitors import watermark
from monitors.adapters.log_analytics import QueryFailed
from monitors.adapters.table_store import StaleWrite
from monitors.bootstrap import services_from_environment
from monitors.detections import DETECTIONS
from monitors.detections.user_arm_write import arm_row
from monitors.settings import SettingsError, Webhook

MINIMAL_CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hello"}]}


def envelope(card: dict) -> dict:
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def test_managed_identity_credential_gets_verifiable_tokens(devstack: Devstack, app_env: dict) -> None:
    credential = ManagedIdentityCredential()
    token = credential.get_token("https://api.loganalytics.io/.default")
    claims = verify_token(
        token.token,
        public_key_pem=devstack.log_analytics.public_key_pem,
        audience="https://api.loganalytics.io",
    )
    assert claims["idtyp"] == "app"
    assert token.expires_on > datetime.now(UTC).timestamp() + 600


def test_table_store_over_https_with_oauth(app_env: dict) -> None:
    store = services_from_environment().store
    assert store.get("probe", "p", "r") is None
    assert store.insert("probe", {"PartitionKey": "p", "RowKey": "r", "Value": 1})
    assert not store.insert("probe", {"PartitionKey": "p", "RowKey": "r", "Value": 2})
    first = store.get("probe", "p", "r")
    assert first is not None
    assert first["Value"] == 1
    store.replace("probe", {**first, "Value": 3}, etag=first["etag"])
    with pytest.raises(StaleWrite):
        store.replace("probe", {**first, "Value": 4}, etag=first["etag"])  # etag of the old version
    assert store.get("probe", "p", "r")["Value"] == 3
    assert store.upsert_many("probe", [{"PartitionKey": "q", "RowKey": str(i)} for i in range(150)]) == 2


def test_batched_inserts_keep_what_exists_and_create_the_rest(app_env: dict) -> None:
    """A retried or recovered enqueue meets its own earlier write: that transaction fails as a
    whole (409), so its entities go one by one; what exists stays as it was."""
    store = services_from_environment().store
    rows = [{"PartitionKey": "o", "RowKey": f"{i:03d}", "Value": "new"} for i in range(150)]
    assert store.insert_many("probe", rows[:100]) == 1
    assert store.insert("probe", {**rows[120], "Value": "older"}) is True
    before = store.transactions
    assert store.insert_many("probe", [*rows[:10], *rows[100:]]) == 1 + 60  # one refused batch, then singles
    assert store.transactions - before == 61
    stored = {e["RowKey"]: e["Value"] for e in store.query("probe", "PartitionKey eq @pk", {"pk": "o"})}
    assert len(stored) == 150
    assert stored["120"] == "older"
    assert {stored[f"{i:03d}"] for i in range(150) if i != 120} == {"new"}
    assert store.insert_many("probe", []) == 0


def test_claims_create_what_is_free_and_return_what_someone_holds(app_env: dict) -> None:
    """Dedupe markers are claims: a batch meeting one held marker (409) goes one by one; the held
    ones come back as stored, never overwritten, the free ones are created."""
    store = services_from_environment().store
    mine = [{"PartitionKey": "c", "RowKey": f"{i:03d}", "AlertId": "mine"} for i in range(120)]
    assert store.insert("probe", {**mine[7], "AlertId": "theirs"})
    assert store.claim_many("probe", mine[100:]) == []  # all free
    held = store.claim_many("probe", mine)
    assert [(e["RowKey"], e["AlertId"]) for e in held] == [
        ("007", "theirs"),
        *((f"{i:03d}", "mine") for i in range(100, 120)),
    ]
    owners = {e["RowKey"]: e["AlertId"] for e in store.query("probe", "PartitionKey eq @pk", {"pk": "c"})}
    assert len(owners) == 120
    assert owners.pop("007") == "theirs"
    assert set(owners.values()) == {"mine"}


def test_batched_deletes_tolerate_what_is_gone_and_delete_the_rest(app_env: dict) -> None:
    """An entity deleted already (by a tick that crashed before it could tell) fails its whole
    transaction (404): that transaction's entities go one by one, and all of them are gone."""
    store = services_from_environment().store
    rows = [{"PartitionKey": "d", "RowKey": f"{i:03d}"} for i in range(150)]
    store.upsert_many("probe", [*rows, {"PartitionKey": "keep", "RowKey": "001"}])
    store.delete("probe", "d", "120")
    before = store.transactions
    keys = [("d", r["RowKey"]) for r in rows]
    assert store.delete_many("probe", keys) == 1 + 1 + 50  # 100 deleted; 50 refused, then one by one
    assert store.transactions - before == 52
    assert list(store.query("probe", "PartitionKey eq @pk", {"pk": "d"})) == []
    assert [e["RowKey"] for e in store.query("probe", "PartitionKey eq @pk", {"pk": "keep"})] == ["001"]
    assert store.delete_many("probe", [("keep", "001")]) == 1  # a lone entity: a plain request
    assert store.delete_many("probe", []) == 0


def test_log_analytics_reader_returns_typed_rows(devstack: Devstack, app_env: dict) -> None:
    now = datetime.now(UTC)
    devstack.log_analytics.ingest(
        "SigninLogs",
        [
            {
                "TimeGenerated": (now - timedelta(minutes=3)).isoformat(),
                "Id": "row-1",
                "UserPrincipalName": "a@b.c",
                "IsInteractive": True,
                "Status": {"errorCode": 0},
            }
        ],
    )
    reader = services_from_environment().logs
    rows = reader.query(
        "SigninLogs | project Id, TimeGenerated, IsInteractive, Status",
        start=now - timedelta(hours=1),
        end=now,
    )
    (row,) = rows
    assert row["Id"] == "row-1"
    assert row["IsInteractive"] is True
    assert json.loads(row["Status"]) == {"errorCode": 0}  # dynamic columns arrive as JSON text
    assert isinstance(row["TimeGenerated"], datetime)  # the SDK types datetime columns
    assert abs(row["TimeGenerated"] - (now - timedelta(minutes=3))) < timedelta(seconds=1)
    with pytest.raises(QueryFailed, match="NoSuchColumn"):
        reader.query("SigninLogs | where NoSuchColumn == 1", start=now - timedelta(hours=1), end=now)


def test_webhook_poster_delivers_a_card_the_sink_accepts(devstack: Devstack, app_env: dict) -> None:
    poster = services_from_environment().teams
    webhook = services_from_environment().settings.webhooks[0]
    assert poster.post(webhook, envelope(MINIMAL_CARD)).delivered
    assert devstack.teams.messages()[-1]["card"] == MINIMAL_CARD


def test_webhook_poster_reports_429_without_leaking_the_url(devstack: Devstack, app_env: dict) -> None:
    poster = services_from_environment().teams
    webhook: Webhook = services_from_environment().settings.webhooks[0]
    devstack.teams.set_fault(mode="429", retry_after=7, count=1)
    result = poster.post(webhook, {"type": "message", "attachments": []})
    assert (result.delivered, result.status, result.retry_after_s) == (False, 429, 7.0)
    assert "sig=" not in (result.error or "")


def test_timer_function_runs_a_tick_through_the_real_function_code(
    devstack: Devstack, function_app: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    write = arm_row("w-1", "ops@contoso.com", None)  # no claims: the Caller decides (a user)
    devstack.log_analytics.ingest(
        "AzureActivity",
        [
            {**write, "TimeGenerated": (now - timedelta(hours=30)).isoformat(),
             "_IngestionTime": (now - timedelta(minutes=5)).isoformat()},
            # ingested "now": past the window end (visibility lag), so it belongs to the next tick
            {**arm_row("w-2", "ops2@contoso.com", None),
             "TimeGenerated": (now - timedelta(minutes=1)).isoformat(), "_IngestionTime": now.isoformat()},
        ],
    )  # fmt: skip
    (timer_function,) = [
        f for f in function_app.app.get_functions() if f.get_function_name() == "monitor_tick"
    ]
    with caplog.at_level("INFO", logger="monitors.tick"):
        timer_function.get_user_function()(TimerRequest(past_due=False))

    (summary,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "monitors.tick"]
    # every detection of the catalogue ran; only user-arm-write had a row in this window
    assert summary["rows"] == {**{d.id: 0 for d in DETECTIONS}, "user-arm-write": 1}
    assert summary["alerts_stored"] == 1
    assert summary["delivered"] == 1
    store = services_from_environment().store
    mark = watermark.read(store, devstack.workspace_id, "user-arm-write")
    assert mark.ingested_up_to is not None
    assert now - timedelta(minutes=3) < mark.ingested_up_to <= now


def test_timer_function_fails_naming_a_bad_setting_and_ticks_once_it_is_fixed(
    devstack: Devstack,
    function_app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    devstack.log_analytics.ingest("AzureActivity", [{
        **arm_row("s-1", "ops@contoso.com", None),
        "TimeGenerated": (datetime.now(UTC) - timedelta(minutes=6)).isoformat(),
        "_IngestionTime": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }])  # fmt: skip
    good = {name: os.environ[name] for name in ("TEAMS_WEBHOOK_URL", "STATE_TABLE_PREFIX")}
    monkeypatch.setenv(
        "TEAMS_WEBHOOK_URL", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/t/)"
    )
    monkeypatch.setenv("STATE_TABLE_PREFIX", "bad name")
    (timer_function,) = [
        f.get_user_function()
        for f in function_app.app.get_functions()
        if f.get_function_name() == "monitor_tick"
    ]
    with caplog.at_level("INFO"), pytest.raises(SettingsError) as failed:
        timer_function(TimerRequest(past_due=False))
    assert [p.split()[0] for p in failed.value.problems] == ["STATE_TABLE_PREFIX", "TEAMS_WEBHOOK_URL"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2, errors  # one line per bad setting, each with its fix
    assert "STATE_TABLE_PREFIX is 'bad name'; table names must start with a letter" in errors[0]
    assert "TEAMS_WEBHOOK_URL is an unresolved Key Vault reference" in errors[1]
    assert "kv.vault.azure.net" not in caplog.text
    assert not [r for r in caplog.records if r.name == "monitors.tick"], "a tick ran with bad settings"
    assert devstack.teams.messages() == []

    # The failure is not cached: once the setting is fixed, the next run ticks.
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    caplog.clear()
    with caplog.at_level("INFO", logger="monitors.tick"):
        timer_function(TimerRequest(past_due=False))
    (summary,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "monitors.tick"]
    assert summary["delivered"] == 1
    assert len(devstack.teams.messages()) == 1


def test_history_routes_serve_stored_alerts(devstack: Devstack, function_app: ModuleType) -> None:
    now = datetime.now(UTC)
    devstack.log_analytics.ingest(
        "AzureActivity",
        [
            {
                **arm_row("h-1", "ops@contoso.com", None),
                # relative to now: arm_row's fixed TimeGenerated falls out of the tick's lookback
                "TimeGenerated": (now - timedelta(minutes=6)).isoformat(),
                "_IngestionTime": (now - timedelta(minutes=5)).isoformat(),
            }
        ],
    )
    functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
    functions["monitor_tick"](TimerRequest(past_due=False))

    listing = functions["alert_history"](HttpRequest("GET", "/api/alerts", params={"limit": "10"}, body=b""))
    assert listing.status_code == 200
    (alert,) = json.loads(listing.get_body())["alerts"]
    assert (alert["detection"], alert["principal"], alert["delivery"]) == (
        "user-arm-write",
        "ops@contoso.com",
        "delivered",
    )

    detail = functions["alert_detail"](
        HttpRequest(
            "GET", f"/api/alerts/{alert['alert_id']}", route_params={"alert_id": alert["alert_id"]}, body=b""
        )
    )
    assert detail.status_code == 200
    assert json.loads(detail.get_body())["alert"]["event_ids"] == ["h-1"]

    for bad in ("../../etc", "0000000000000-zzzzzzzzzzzz", "9" * 13 + "-" + "a" * 12):
        missing = functions["alert_detail"](
            HttpRequest("GET", "/x", route_params={"alert_id": bad}, body=b"")
        )
        assert missing.status_code == 404
        assert bad not in missing.get_body().decode()


def test_webhook_poster_keeps_to_four_requests_per_second(devstack: Devstack, app_env: dict) -> None:
    import requests

    from monitors.adapters.teams import WebhookPoster

    clock = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    poster = WebhookPoster(requests.Session(), clock=lambda: clock[0], sleep=sleep)
    webhook = services_from_environment().settings.webhooks[0]
    for _ in range(5):
        assert poster.post(webhook, envelope(MINIMAL_CARD)).delivered
    assert waits == [0.25, 0.25, 0.25, 0.25]  # the clock stands still between posts: each one waits
    assert len(devstack.teams.messages()) == 5
