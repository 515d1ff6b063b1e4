"""A LogsReader over the devstack's query engine in this process: same KQL, same response
shape as the HTTP API, no network. Used by `replay` and by the detection case tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from devstack.loganalytics import ApiError, LogAnalyticsServer, QueryRequest
from monitors.adapters.log_analytics import QueryFailed, QueryIncomplete

MAX_WAIT_S = 600.0  # the service's own ceiling


class LocalLogsReader:
    def __init__(self, engine: LogAnalyticsServer) -> None:
        self.engine = engine
        self.requests = 0

    def query(self, kql: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        self.requests += 1
        request = QueryRequest(
            query=kql,
            timespan=f"{start.isoformat()}/{end.isoformat()}",
            wait_s=MAX_WAIT_S,
            include_statistics=False,
        )
        try:
            response = self.engine.query(request)
        except ApiError as error:
            inner = (error.innererror or {}).get("message", "")
            raise QueryFailed(
                f"the query engine refused the query: {error.message} {inner}".strip()
            ) from error
        if "error" in response:
            raise QueryIncomplete(
                f"partial result: {response['error'].get('message')}", len(response["tables"][0]["rows"])
            )
        table = response["tables"][0]
        names = [column["name"] for column in table["columns"]]
        return [dict(zip(names, row, strict=True)) for row in table["rows"]]
