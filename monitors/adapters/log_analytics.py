"""Log Analytics query API through azure-monitor-query."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from azure.monitor.query import LogsQueryClient

Row = dict[str, Any]


class QueryFailed(Exception):
    """The workspace did not return a complete answer; the tick must not move its watermark."""


class QueryIncomplete(QueryFailed):
    """A partial result (row or size limit, or a timeout): the caller may retry a smaller window."""

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received  # rows the partial answer held: none means a failure, not a volume


class LogsReader(Protocol):
    def query(self, kql: str, start: datetime, end: datetime) -> list[Row]: ...


class LogAnalyticsReader:
    """Runs KQL against one workspace; a partial result is a failure, never a short success."""

    def __init__(self, client: LogsQueryClient, workspace_id: str, server_timeout_s: int = 180) -> None:
        self._client = client
        self._workspace_id = workspace_id
        self._server_timeout_s = server_timeout_s
        self.requests = 0

    def query(self, kql: str, start: datetime, end: datetime) -> list[Row]:
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.monitor.query import LogsQueryStatus

        self.requests += 1
        try:
            result = self._client.query_workspace(
                self._workspace_id, kql, timespan=(start, end), server_timeout=self._server_timeout_s
            )
        except HttpResponseError as error:
            raise QueryFailed(f"Log Analytics refused the query: {error.message}") from error
        except AzureError as error:  # no answer at all: connection reset or refused, read timeout
            raise QueryFailed(f"Log Analytics did not answer: {type(error).__name__}: {error}") from error
        if result.status == LogsQueryStatus.PARTIAL:
            received = sum(len(t.rows) for t in result.partial_data)
            raise QueryIncomplete(
                f"Log Analytics returned a partial result ({received} rows): {result.partial_error.message}",
                received,
            )
        table = result.tables[0]
        return [dict(zip(table.columns, row, strict=True)) for row in table.rows]
