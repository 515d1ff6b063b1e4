"""Wrappers around the real adapters that do something at a chosen step of a tick.

A `Probe` holds triggers: "when the 2nd `insert_many` into `outbox` has returned, do X". The
wrapped LogsReader, StateStore and TeamsPoster report every call to the probe before it runs,
and after it returned or when it raised ("error", kept in `Probe.failures`: a 412 the code
handled is still seen), then call the real adapter; production code is never edited. Actions:
SIGKILL the process, hold a tick at a step (two ticks racing), restart Azurite, raise.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitors.adapters.log_analytics import LogsReader, Row
from monitors.adapters.table_store import Entity, StateStore
from monitors.adapters.teams import PostResult, TeamsPoster


@dataclass(slots=True)
class Trigger:
    """Fire `action` on the `nth` call of `kind` (e.g. "store.insert") on `table`, `when`
    "before", "after" (it returned) or "error" (it raised)."""

    kind: str | tuple[str, ...]
    action: Callable[[], None]
    when: str = "after"
    table: str | None = None
    nth: int = 1
    only: Callable[[dict[str, Any]], bool] | None = None  # extra condition on the call's details
    seen: int = 0
    fired: bool = False

    def matches(self, kind: str, when: str, details: dict[str, Any]) -> bool:
        kinds = (self.kind,) if isinstance(self.kind, str) else self.kind
        if kind not in kinds or when != self.when:
            return False
        if self.table is not None and details.get("table") != self.table:
            return False
        return self.only is None or self.only(details)


@dataclass(slots=True)
class Probe:
    triggers: list[Trigger] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    failures: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # calls that raised
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, kind: str | tuple[str, ...], action: Callable[[], None], **options: Any) -> Trigger:
        trigger = Trigger(kind, action, **options)
        self.triggers.append(trigger)
        return trigger

    def fire(self, kind: str, when: str, **details: Any) -> None:
        due = []
        with self._lock:
            if when == "before":
                self.calls.append(_label(kind, details))
            elif when == "error":
                self.failures.append((kind, details))
            for trigger in self.triggers:
                if trigger.fired or not trigger.matches(kind, when, details):
                    continue
                trigger.seen += 1
                if trigger.seen == trigger.nth:
                    trigger.fired = True
                    due.append(trigger.action)
        for action in due:
            action()


def _label(kind: str, details: dict[str, Any]) -> str:
    """`store.replace:watermarks/break-glass-use`: the row is named where the call has one (the
    tick lease and the detections' watermarks share a table)."""
    row = details.get("row_key") or (details.get("entity") or {}).get("RowKey")
    return f"{kind}:{details.get('table', '')}" + (f"/{row}" if row else "")


def sigkill() -> None:
    """The process dies here: no finally, no atexit, no flush."""
    os.kill(os.getpid(), signal.SIGKILL)


class ProbedLogs:
    def __init__(self, real: LogsReader, probe: Probe) -> None:
        self.real, self.probe = real, probe

    def query(self, kql: str, start: datetime, end: datetime) -> list[Row]:
        self.probe.fire("logs.query", "before", kql=kql)
        try:
            rows = self.real.query(kql, start, end)
        except Exception as error:
            self.probe.fire("logs.query", "error", kql=kql, error=error)
            raise
        self.probe.fire("logs.query", "after", kql=kql, rows=len(rows))
        return rows


class ProbedStore:
    """Every StateStore method, reported to the probe with its table (and etag for replace)."""

    def __init__(self, real: StateStore, probe: Probe) -> None:
        self.real, self.probe = real, probe

    def _call(self, kind: str, table: str, run: Callable[[], Any], **details: Any) -> Any:
        self.probe.fire(f"store.{kind}", "before", table=table, **details)
        try:
            result = run()
        except Exception as error:
            self.probe.fire(f"store.{kind}", "error", table=table, error=error, **details)
            raise
        self.probe.fire(f"store.{kind}", "after", table=table, result=result, **details)
        return result

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        return self._call("get", table, lambda: self.real.get(table, partition_key, row_key), row_key=row_key)

    def insert(self, table: str, entity: Mapping[str, Any]) -> bool:
        return self._call("insert", table, lambda: self.real.insert(table, entity), entity=entity)

    def replace(self, table: str, entity: Mapping[str, Any], etag: str | None) -> None:
        return self._call(
            "replace", table, lambda: self.real.replace(table, entity, etag), entity=entity, etag=etag
        )

    def insert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int:
        items = list(entities)
        return self._call("insert_many", table, lambda: self.real.insert_many(table, items), count=len(items))

    def upsert_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> int:
        items = list(entities)
        return self._call("upsert_many", table, lambda: self.real.upsert_many(table, items), count=len(items))

    def claim_many(self, table: str, entities: Iterable[Mapping[str, Any]]) -> list[Entity]:
        items = list(entities)
        return self._call("claim_many", table, lambda: self.real.claim_many(table, items), count=len(items))

    def merge(self, table: str, entity: Mapping[str, Any]) -> None:
        return self._call("merge", table, lambda: self.real.merge(table, entity), entity=entity)

    def delete(self, table: str, partition_key: str, row_key: str) -> None:
        return self._call("delete", table, lambda: self.real.delete(table, partition_key, row_key))

    def delete_many(self, table: str, keys: Iterable[tuple[str, str]]) -> int:
        items = list(keys)
        return self._call("delete_many", table, lambda: self.real.delete_many(table, items), count=len(items))

    def query(
        self,
        table: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Entity]:
        self.probe.fire("store.query", "before", table=table)
        yield from self.real.query(table, query_filter, parameters, select=select, page_size=page_size)
        self.probe.fire("store.query", "after", table=table)


class ProbedTeams:
    def __init__(self, real: TeamsPoster, probe: Probe) -> None:
        self.real, self.probe = real, probe

    def post(self, webhook: Any, payload: dict[str, Any]) -> PostResult:
        self.probe.fire("teams.post", "before")
        result = self.real.post(webhook, payload)
        self.probe.fire("teams.post", "after", delivered=result.delivered, status=result.status)
        return result
