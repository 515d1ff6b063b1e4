"""Composition root: settings -> real SDK clients -> services. The only place that wires."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

from monitors.adapters.log_analytics import LogAnalyticsReader
from monitors.adapters.table_store import TableStore
from monitors.adapters.teams import WebhookPoster
from monitors.detections import DETECTIONS
from monitors.settings import Settings, load_settings
from monitors.tick import Services, TickReport, run_tick
from monitors.waivers import WaiverBook


def build_services(settings: Settings) -> Services:
    # Heavy SDK imports happen here, on first use, not when the Functions host indexes the app.
    import requests
    from azure.data.tables import TableServiceClient
    from azure.identity import DefaultAzureCredential
    from azure.monitor.query import LogsQueryClient

    # Managed identity in Azure (and against the devstack's identity endpoint); a developer's
    # own sign-in when run from a laptop. Never a key or a connection string.
    credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    logs_client = LogsQueryClient(
        credential, endpoint=settings.log_analytics_endpoint, audience=settings.log_analytics_audience
    )
    tables = TableServiceClient(settings.table_endpoint, credential=credential)
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
    return run_tick(services, DETECTIONS, now or datetime.now(UTC))
