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
from monitors.tick import Services, TickReport, run_tick
from monitors.waivers import WaiverBook

CONNECT_TIMEOUT_S = 10
QUERY_READ_TIMEOUT_S = 200  # the query API's own server timeout is 180 s
TABLE_READ_TIMEOUT_S = 30


def build_services(settings: Settings) -> Services:
    # Heavy SDK imports happen here, on first use, not when the Functions host indexes the app.
    import requests
    from azure.data.tables import TableServiceClient
    from azure.identity import DefaultAzureCredential
    from azure.monitor.query import LogsQueryClient

    # Managed identity in Azure (and against the devstack's identity endpoint); a developer's
    # own sign-in when run from a laptop. Never a key or a connection string.
    credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    # azure-core waits 300 s by default: a hung connection would eat the tick. Queries may run
    # for the server timeout (180 s), table calls are small.
    logs_client = LogsQueryClient(
        credential,
        endpoint=settings.log_analytics_endpoint,
        audience=settings.log_analytics_audience,
        connection_timeout=CONNECT_TIMEOUT_S,
        read_timeout=QUERY_READ_TIMEOUT_S,
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
        logs=LogAnalyticsReader(logs_client, settings.workspace_id),
        store=store,
        teams=WebhookPoster(requests.Session()),
        waivers=WaiverBook(store).covering,
    )


def services_from_environment(env: Mapping[str, str] | None = None) -> Services:
    return build_services(load_settings(os.environ if env is None else env))


def tick(services: Services, now: datetime | None = None) -> TickReport:
    detections = enabled(services.settings.disabled_detections)
    return run_tick(services, detections, now or datetime.now(UTC))
