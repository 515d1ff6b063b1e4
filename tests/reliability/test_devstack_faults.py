"""The fault injectors themselves: they must fail the way the real services fail, and only on demand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ServiceResponseError
from azure.identity import ManagedIdentityCredential

from devstack.azurite import Azurite, free_port
from devstack.faulty_proxy import FaultyProxy
from devstack.stack import Devstack
from monitors.adapters.log_analytics import LogAnalyticsReader, QueryFailed, QueryIncomplete
from monitors.adapters.teams import WebhookPoster
from monitors.bootstrap import build_services
from monitors.settings import Webhook, load_settings

QUERY = "SigninLogs | project Id"


@pytest.fixture
def reader(devstack: Devstack) -> Iterator[LogAnalyticsReader]:
    devstack.log_analytics.clear()
    devstack.log_analytics.clear_faults()
    now = datetime.now(UTC)
    rows = [{"Id": f"r{n}", "TimeGenerated": (now - timedelta(minutes=5)).isoformat()} for n in range(6)]
    devstack.log_analytics.ingest("SigninLogs", rows)
    services = build_services(load_settings(devstack.app_settings()))
    assert isinstance(services.logs, LogAnalyticsReader)
    yield services.logs
    devstack.log_analytics.clear_faults()


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now


def test_query_faults_have_the_service_shapes(devstack: Devstack, reader: LogAnalyticsReader) -> None:
    la = devstack.log_analytics
    la.set_fault("429", count=1, retry_after=0.1)
    assert len(reader.query(QUERY, *window())) == 6  # the SDK waited Retry-After and asked again
    la.set_fault("partial", count=1)
    with pytest.raises(QueryIncomplete, match="partial result \\(3 rows\\)"):
        reader.query(QUERY, *window())
    la.set_fault("invalid", count=1)
    with pytest.raises(QueryFailed, match="refused the query"):
        reader.query(QUERY, *window())
    la.set_fault("drop", count=1)
    with pytest.raises(QueryFailed, match="did not answer"):
        reader.query(QUERY, *window())
    assert la.fault_log[-4:] == ["429", "partial", "invalid", "drop"]
    assert la.faults() is None
    assert len(reader.query(QUERY, *window())) == 6


def test_query_faults_through_the_admin_endpoint(devstack: Devstack) -> None:
    base, ca = devstack.log_analytics.url, str(devstack.certs.ca)
    answer = requests.post(f"{base}/admin/faults", json={"mode": "503", "count": 2}, verify=ca, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["fault"]["count"] == 2
    assert requests.get(f"{base}/admin/faults", verify=ca, timeout=5).json()["fault"]["mode"] == "503"
    bad = requests.post(f"{base}/admin/faults", json={"mode": "418"}, verify=ca, timeout=5)
    assert bad.status_code == 400
    assert requests.delete(f"{base}/admin/faults", verify=ca, timeout=5).status_code == 200
    assert devstack.log_analytics.faults() is None


def test_429_carries_retry_after(devstack: Devstack) -> None:
    devstack.log_analytics.set_fault("429", count=1, retry_after=7)
    url = f"{devstack.log_analytics.url}/v1/workspaces/{devstack.workspace_id}/query"
    bearer = ManagedIdentityCredential().get_token("https://api.loganalytics.io/.default").token
    answer = requests.post(
        url, json={"query": QUERY}, headers={"Authorization": f"Bearer {bearer}"},
        verify=str(devstack.certs.ca), timeout=5,
    )  # fmt: skip
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["error"]["code"] == "ThrottledError"


def test_proxy_forwards_and_fails_on_demand(devstack: Devstack) -> None:
    with FaultyProxy(devstack.azurite.port, devstack.state_dir) as proxy:
        env = devstack.app_settings(
            STATE_TABLE_ENDPOINT=proxy.table_endpoint, STATE_TABLE_PREFIX="proxyprobe"
        )
        store = build_services(load_settings(env)).store
        assert store.insert("probe", {"PartitionKey": "p", "RowKey": "r", "Value": 1})
        proxy.add_fault("503", count=1, method="GET", match="probe")
        assert store.get("probe", "p", "r")["Value"] == 1  # retried by the SDK
        proxy.add_fault("drop", count=1, method="POST", match="probe")
        with pytest.raises(ServiceResponseError):  # an insert is not retried without an answer
            store.insert("probe", {"PartitionKey": "p", "RowKey": "s"})
        proxy.add_fault("500-after", count=1, method="POST", match="probe")
        assert not store.insert("probe", {"PartitionKey": "p", "RowKey": "t"})  # done, then 409 on retry
        assert store.get("probe", "p", "t") is not None
        proxy.add_fault("drop", count=1, method="POST", match="probe", row_key="v")
        assert store.insert("probe", {"PartitionKey": "p", "RowKey": "u"})  # another row: not faulted
        with pytest.raises(ServiceResponseError):
            store.insert("probe", {"PartitionKey": "p", "RowKey": "v"})
        proxy.add_fault("503", count=1, method="GET", match="probe", row_key="v")
        assert store.get("probe", "p", "u") is not None  # another row: not faulted
        assert store.get("probe", "p", "v") is None  # the dropped insert never landed
        assert [(r.outcome, "RowKey='v'" in r.path) for r in proxy.injected()] == [
            ("fault:503", False), ("fault:drop", False), ("fault:500-after", False), ("fault:drop", False),
            ("fault:503", True),
        ]  # fmt: skip


def test_persistent_azurite_keeps_writes_across_a_restart(devstack: Devstack, tmp_path: Path) -> None:
    """Real Table Storage never forgets an acknowledged write; a restarted stand-in must not either."""
    azurite = Azurite(devstack.certs, port=free_port(), location=tmp_path / "azurite").start()
    try:
        env = devstack.app_settings(STATE_TABLE_ENDPOINT=azurite.table_endpoint)
        store = build_services(load_settings(env)).store
        store.insert("probe", {"PartitionKey": "p", "RowKey": "r"})
        azurite.stop()
        azurite.start()
        assert store.get("probe", "p", "r") is not None
    finally:
        azurite.stop()


@pytest.mark.parametrize(("mode", "status", "shown"), [("413", 413, 0), ("lost", 202, 0)])
def test_sink_413_and_accepted_but_lost(devstack: Devstack, mode: str, status: int, shown: int) -> None:
    sink = devstack.teams
    sink.clear()
    sink.set_fault(mode, count=1)
    webhook = Webhook(name="oncall", url=sink.webhook_url("oncall"), min_severity="low")  # type: ignore[arg-type]
    session = requests.Session()
    session.verify = str(devstack.certs.ca)
    result = WebhookPoster(session).post(webhook, _card())
    assert result.status == status
    assert result.delivered is (status == 202)  # "lost": the monitor cannot tell
    assert len(sink.messages()) == shown
    assert sink.attempts()[-1]["outcome"] == f"fault:{mode}"


def _card() -> dict[str, Any]:
    content = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x"}]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
    ]}  # fmt: skip


def test_a_fault_can_target_the_queries_that_contain_a_text(devstack: Devstack) -> None:
    url = f"{devstack.log_analytics.url}/v1/workspaces/{devstack.workspace_id}/query"
    bearer = ManagedIdentityCredential().get_token("https://api.loganalytics.io/.default").token

    def ask(query: str) -> int:
        return requests.post(
            url, json={"query": query}, headers={"Authorization": f"Bearer {bearer}"},
            verify=str(devstack.certs.ca), timeout=5,
        ).status_code  # fmt: skip

    devstack.log_analytics.set_fault("503", count=1, match="SigninLogs")
    try:
        assert ask("AzureActivity | take 1") == 200  # not matched: answered, and not counted down
        assert ask("SigninLogs | take 1") == 503
        assert ask("SigninLogs | take 1") == 200
    finally:
        devstack.log_analytics.clear_faults()
