"""The read side for on-call: alert history as JSON. Pure over AlertState; no HTTP types here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from monitors import alerts
from monitors.history_store import HistoryQuery, HistoryStore

ALERT_ID = re.compile(r"^\d{13}-[0-9a-f]{12}$")
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"


def list_alerts(history: HistoryStore, limit_param: str | None) -> Response:
    try:
        limit = min(max(int(limit_param or 50), 1), MAX_LIMIT)
    except ValueError:
        return _error(400, "limit must be a whole number")
    page = history.query(HistoryQuery(limit=limit))
    return _json(200, {"alerts": [_summary(entity) for entity in page.rows], "next": page.next_after})


def get_alert(history: HistoryStore, alert_id: str) -> Response:
    found = history.get(alert_id) if ALERT_ID.match(alert_id) else None
    if found is None:
        return _error(404, "no such alert")  # never echo the id: it came from the URL
    entity, alert = found
    return _json(200, {**_summary(entity), "alert": alerts.to_json(alert)})


def _summary(entity: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": entity["RowKey"],
        "created_at": entity["CreatedAt"].isoformat(),
        "detection": entity["Detection"],
        "severity": entity["Severity"],
        "principal": entity["Principal"],
        "headline": entity["Headline"],
        "events": entity["EventCount"],
        "status": entity["Status"],
        "delivery": entity["Delivery"],
        "delivery_attempts": entity["DeliveryAttempts"],
        "last_delivery_error": entity["LastDeliveryError"] or None,
    }


def _json(status: int, payload: Any) -> Response:
    return Response(status=status, body=json.dumps(payload))


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})
