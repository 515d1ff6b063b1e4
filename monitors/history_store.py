"""Alert history in Table Storage, laid out for on-call's questions.

Every alert lives in partition "alert" (row key = alert id, which sorts newest first), with
its full payload. Copies of its summary live in index partitions: "detection|<detection>" (row
key = alert id) and "principal" (row key = `key(principal)|alert id`, one copy for the object
id and one for the UPN), so a filtered page is a range read of one partition, never a scan of
the table. The principal index is one partition, not one per principal, so that a tick's new
alerts, each for a different principal, are stored in batch transactions. A time range is a
row-key range; severity and status are filters inside the chosen partition. Pages continue from
the last alert shown, so paging stays cheap however many alerts are stored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors import alerts
from monitors.adapters.table_store import StaleWrite, StateStore, key, unpack
from monitors.model import Alert

TABLE = "alerts"
MAIN = "alert"
STATUSES = ("new", "acknowledged", "resolved", "waived")
MAX_DELIVERY_LOG = 20
RECORD_ATTEMPTS = 3  # on-call clicks, not machines, race the delivery record: a few suffice
MAX_PAGE = 200
CHART_MAX_ALERTS = 20_000


PRINCIPALS = "principal"


def _alert_id(row_key: str) -> str:
    """The alert id in a row key of any partition (key() never leaves a '|' in a principal)."""
    return row_key.rpartition("|")[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    detection: str | None = None
    severity: str | None = None
    status: str | None = None
    principal: str | None = None  # object id or UPN, any case
    since: datetime | None = None
    until: datetime | None = None
    after: str | None = None  # the last alert id of the previous page
    limit: int = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    rows: list[dict[str, Any]]
    next_after: str | None  # pass as `after` for the next page; None on the last page


class StatusConflict(Exception):
    """The alert's status is not one the change may start from (someone else changed it first)."""

    def __init__(self, current: str) -> None:
        self.current = current
        super().__init__(f"the alert is {current}")


class HistoryStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    # --- writes (the tick)

    def write(self, entities: Iterable[dict[str, Any]]) -> None:
        """Create or overwrite alerts and their index copies (`alert_entities`), batched per
        partition; idempotent (crash recovery)."""
        self.store.upsert_many(TABLE, entities)

    def record_delivery(
        self, alert_id: str, *, delivery: str, attempts: int, error: str | None, now: datetime
    ) -> None:
        """Append to the delivery log. On-call may acknowledge the alert between our read and our
        ETag-guarded write: read again and re-apply (the change is ours alone to make)."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            main = self.store.get(TABLE, MAIN, alert_id)
            if main is None:
                return
            log = json.loads(main.get("DeliveryLog") or "[]")
            entry = {"at": now.isoformat(), "result": delivery, "error": error}
            if log and log[-1] == entry:
                return  # our write landed, its answer was lost and the SDK's retry met it (412)
            log.append(entry)
            changes = {
                "Delivery": delivery,
                "DeliveryAttempts": attempts,
                "LastDeliveryError": error or "",
                "DeliveryLog": json.dumps(log[-MAX_DELIVERY_LOG:]),
            }
            if delivery == "delivered":
                changes["DeliveredAt"] = now
            try:
                self._update(main, changes)
                return
            except StaleWrite:
                if attempt == RECORD_ATTEMPTS:
                    raise

    # --- on-call

    def set_status(
        self,
        alert_id: str,
        status: str,
        *,
        by: str,
        note: str,
        now: datetime,
        via: str | None = None,
        allowed_from: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """Acknowledge or resolve; every change is kept with who, when, why and (`via`) how `by` is known.

        `allowed_from`: the statuses the change may start from, checked on the same read the
        ETag-guarded write uses, so two people acting at once cannot both acknowledge.
        """
        if status not in ("acknowledged", "resolved"):
            raise ValueError("status must be acknowledged or resolved")
        main = self.store.get(TABLE, MAIN, alert_id)
        if main is None:
            raise KeyError(alert_id)
        if allowed_from is not None and main["Status"] not in allowed_from:
            raise StatusConflict(main["Status"])
        history = json.loads(main.get("StatusHistory") or "[]")
        change = {"at": now.isoformat(), "by": by, "from": main["Status"], "to": status, "note": note}
        history.append({**change, "via": via} if via else change)
        return self._update(main, {"Status": status, "StatusHistory": json.dumps(history)})

    def get(self, alert_id: str) -> tuple[dict[str, Any], Alert] | None:
        entity = self.store.get(TABLE, MAIN, alert_id)
        if entity is None:
            return None
        return entity, alerts.from_json(unpack(entity))

    def query(self, q: HistoryQuery) -> Page:
        """A page of summaries, newest first; each row's RowKey is the alert id, whichever
        partition served it."""
        partition, prefix, conditions, params = MAIN, "", [], {}
        if q.principal:
            partition, prefix = PRINCIPALS, f"{key(q.principal.strip().lower())}|"
            conditions.append("RowKey gt @prefix and RowKey lt @end")  # '~' sorts after every alert id
            params.update(prefix=prefix, end=f"{prefix}~")
        elif q.detection:
            partition = f"detection|{q.detection}"
        params["pk"] = partition
        if q.detection and q.principal:
            conditions.append("Detection eq @detection")
            params["detection"] = q.detection
        if q.after:
            conditions.append("RowKey gt @after")
            params["after"] = prefix + q.after
        if q.since:  # newer alerts have smaller row keys
            conditions.append("RowKey lt @since")
            params["since"] = f"{prefix}{_inverted(q.since)}~"
        if q.until:
            conditions.append("RowKey ge @until")
            params["until"] = f"{prefix}{_inverted(q.until)}"
        for column, value in (("Severity", q.severity), ("Status", q.status)):
            if value:
                conditions.append(f"{column} eq @{column.lower()}")
                params[column.lower()] = value
        limit = min(max(q.limit, 1), MAX_PAGE)
        query_filter = " and ".join(["PartitionKey eq @pk", *conditions])
        rows = []
        for entity in self.store.query(TABLE, query_filter, params, page_size=limit + 1):
            rows.append({**entity, "RowKey": _alert_id(entity["RowKey"])})
            if len(rows) > limit:
                break
        more = len(rows) > limit
        return Page(rows=rows[:limit], next_after=rows[limit - 1]["RowKey"] if more else None)

    def reindex(self) -> int:
        """Write every alert's index copies again from its main entity; returns alerts indexed.

        For alerts stored before the principal index became one partition (their copies sit in
        "principal|<key>" partitions, which nothing reads now). Idempotent; a status changed
        while it runs can be overwritten in a copy with the value read a moment before."""
        indexed, copies = 0, []
        for main in self.store.query(TABLE, "PartitionKey eq @pk", {"pk": MAIN}, page_size=1000):
            summary = {k: v for k, v in main.items() if k != "etag" and not k.startswith("Payload")}
            copies += [{**summary, "PartitionKey": p, "RowKey": r} for p, r in _index_keys(summary)]
            indexed += 1
            if len(copies) >= 1000:
                self.store.upsert_many(TABLE, copies)
                copies = []
        self.store.upsert_many(TABLE, copies)
        return indexed

    def daily_counts(self, days: int, now: datetime) -> dict[str, Counter[str]]:
        """Alerts per UTC day per detection, newest day last; reads only two small columns."""
        start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        counts: dict[str, Counter[str]] = {
            (start + timedelta(days=n)).date().isoformat(): Counter() for n in range(days)
        }
        rows = self.store.query(
            TABLE, "PartitionKey eq @pk and RowKey lt @since", {"pk": MAIN, "since": f"{_inverted(start)}~"},
            select=["CreatedAt", "Detection"], page_size=1000,
        )  # fmt: skip
        for n, entity in enumerate(rows):
            if n >= CHART_MAX_ALERTS:
                break
            day = entity["CreatedAt"].astimezone(UTC).date().isoformat()
            if day in counts:
                counts[day][entity["Detection"]] += 1
        return counts

    # --- helpers

    def _update(self, main: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Change the main entity (ETag-guarded: a concurrent change raises StaleWrite), then its copies."""
        updated = {**main, **changes}
        self.store.replace(TABLE, updated, main["etag"])
        for partition, row_key in _index_keys(main):
            self.store.merge(TABLE, {"PartitionKey": partition, "RowKey": row_key, **changes})
        return updated


def alert_entities(
    alert: Alert, *, status: str, delivery: str, payload: dict[str, Any], waiver: str | None = None
) -> list[dict[str, Any]]:
    """The main entity (summary and payload) and its index copies (summary only), as stored.

    `waiver` names the waiver that covered a "waived" alert ("waiver by ... until ...: reason").
    """
    summary = _summary_entity(alert, status=status, delivery=delivery, waiver=waiver)
    copies = ({**summary, "PartitionKey": p, "RowKey": r} for p, r in _index_keys(summary))
    return [{**summary, "PartitionKey": MAIN, **payload}, *copies]


def _index_keys(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(PartitionKey, RowKey) of an alert's index copies, from its summary (or main entity)."""
    alert_id = summary["RowKey"]
    principals = dict.fromkeys([key(summary["PrincipalKey"]), key(summary["Principal"].lower())])
    by_principal = [(PRINCIPALS, f"{principal}|{alert_id}") for principal in principals]
    return [(f"detection|{summary['Detection']}", alert_id), *by_principal]


def _inverted(moment: datetime) -> str:
    return alerts.alert_id_prefix(moment)


def _summary_entity(alert: Alert, *, status: str, delivery: str, waiver: str | None) -> dict[str, Any]:
    finding = alert.finding
    return {
        "RowKey": alert.alert_id,
        "Detection": finding.detection,
        "Severity": finding.severity.value,
        "Principal": finding.principal.label,
        "PrincipalKey": finding.principal.key,
        "Headline": finding.headline,
        "CreatedAt": alert.created_at,
        "EventCount": len(finding.event_ids),
        "Status": status,
        "StatusHistory": "[]",
        "Delivery": delivery,
        "DeliveryAttempts": 0,
        "LastDeliveryError": "",
        "DeliveryLog": "[]",
        "Waiver": waiver or "",
    }
