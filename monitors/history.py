"""The read side for on-call: alert history as JSON. Pure over AlertState; no HTTP types here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from monitors import alerts
from monitors.state import AlertState, unpack

ALERT_ID = re.compile(r"^\d{13}-[0-9a-f]{12}$")
MAX_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"


def list_alerts(state: AlertState, limit_param: str | None) -> Response:
    try:
        limit = min(max(int(limit_param or 50), 1), MAX_LIMIT)
    except ValueError:
        return _error(400, "limit must be a whole number")
    return _json(200, {"alerts": [_summary(entity) for entity in state.history(limit=limit)]})


def get_alert(state: AlertState, alert_id: str) -> Response:
    if not ALERT_ID.match(alert_id):
        return _error(404, "no such alert")  # never echo the id: it came from the URL
    entity = state.store.get("alerts", "alert", alert_id)
    if entity is None:
        return _error(404, "no such alert")
    return _json(200, {**_summary(entity), "alert": alerts.to_json(alerts.from_json(unpack(entity)))})


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
