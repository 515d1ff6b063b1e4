"""Composition root: settings -> real SDK clients -> services. The only place that wires."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

from monitors.adapters.log_analytics import LogAnalyticsReader
from monitors.adapters.table_store import TableStore
from monitors.adapters.teams import WebhookPoster
from monitors.detections import enabled
from monitors.settings import Settings, load_settings
from monitors.tick import Services, TickBudget, TickReport, run_tick
from monitors.waivers import WaiverBook

CONNECT_TIMEOUT_S = 10
TABLE_READ_TIMEOUT_S = 30


def build_services(settings: Settings, budget: TickBudget | None = None) -> Services:
    """`budget`: how a tick spends the function timeout (default: host.json's 9 minutes)."""
    budget = budget or TickBudget()
    # Heavy SDK imports happen here, on first use, not when the Functions host indexes the app.
    import requests
    from azure.data.tables import TableServiceClient
    from azure.identity import DefaultAzureCredential
    from azure.monitor.query import LogsQueryClient

    # Managed identity in Azure (and against the devstack's identity endpoint); a developer's
    # own sign-in when run from a laptop. Never a key or a connection string.
    credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    # azure-core waits 300 s by default and retries a 504 three times: one slow query would eat
    # the tick. Each attempt runs for at most the budget's server timeout, and no retry starts
    # after its retry window (azure-core's `timeout`); table calls are small.
    logs_client = LogsQueryClient(
        credential,
        endpoint=settings.log_analytics_endpoint,
        audience=settings.log_analytics_audience,
        connection_timeout=CONNECT_TIMEOUT_S,
        read_timeout=budget.query_timeout_s + budget.read_slack_s,
        timeout=budget.retry_window_s,
    )
    tables = TableServiceClient(
        settings.table_endpoint,
        credential=credential,
        connection_timeout=CONNECT_TIMEOUT_S,
        read_timeout=TABLE_READ_TIMEOUT_S,
    )
    store = TableStore(tables, settings.table_prefix)
    return Services(
        settings=settings,
        logs=LogAnalyticsReader(logs_client, settings.workspace_id, server_timeout_s=budget.query_timeout_s),
        store=store,
        teams=WebhookPoster(requests.Session()),
        waivers=WaiverBook(store).covering,
        budget=budget,
    )


def services_from_environment(env: Mapping[str, str] | None = None) -> Services:
    return build_services(load_settings(os.environ if env is None else env))


def tick(services: Services, now: datetime | None = None) -> TickReport:
    detections = enabled(services.settings.disabled_detections)
    return run_tick(services, detections, now or datetime.now(UTC))
