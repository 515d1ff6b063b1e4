"""The monitor's memory in Table Storage: outbox, alert history, seen events, baseline.

Write order is what makes a crash harmless:
1. the alert goes into the outbox (the source of truth until it is committed);
2. committing claims its seen-event / baseline markers (created, never overwritten: an alert
   whose markers another alert holds is a duplicate and is dropped), writes its history entry,
   then flags the outbox entry committed; a tick that finds an uncommitted entry finishes the
   job first;
3. only then does the watermark move; delivery comes last and is retried from the outbox,
   which an entry leaves once delivered everywhere it goes, or, if it goes nowhere (waived, or
   below every webhook's severity), at the delivery step after its commit (`discard`).

A waived alert (an accepted exception covered it) of a once-per-principal detection does not
enter the baseline, so when the waiver ends the account's next finding alerts. It is
remembered by its events instead, so rows read again (after a crash) do not store it twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from monitors import alerts, history_store
from monitors.adapters.table_store import StateStore, key, pack, unpack
from monitors.history_store import HistoryStore
from monitors.model import Alert

OUTBOX, SEEN, BASELINE = "outbox", "seen", "baseline"
OUTBOX_PARTITION = "outbox"
BASELINE_POINT_READS = 10  # more principals than this: read the baseline partition's row keys instead
BASELINE_PAGE = 1000  # row keys per page of that read (a Table Storage page holds at most 1,000)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    alert: Alert
    committed: bool
    status: str  # "new", or "waived" when an accepted exception covers it (never delivered)
    pending_targets: tuple[str, ...]  # webhook names still to deliver to
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    etag: str | None
    waiver: str | None = None  # which waiver covered it (status "waived"), as history shows it
    delivered_to: tuple[str, ...] = ()  # webhooks that have it: a re-route never posts to them again


class AlertState:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.history = HistoryStore(store)

    # --- what detections consult

    def known_principals(self, detection: str, principal_keys: Iterable[str]) -> frozenset[str]:
        """Which of these principals already alerted. A few are point reads; many (a tick over a
        large tenant asks about every principal with ARM writes in its window) are one read of the
        baseline partition's row keys between the smallest and the largest asked, in row-key order,
        1,000 a page. That read stops, and the keys beyond it are point reads, once it has cost as
        many pages as keys remain: never more than twice the point reads, usually far fewer."""
        wanted = {key(k): k for k in set(principal_keys)}
        pending = sorted(wanted)
        found: set[str] = set()
        done = 0  # pending[:done] are settled: found, or absent below the row keys read so far
        if len(pending) > BASELINE_POINT_READS:
            rows = self.store.query(
                BASELINE,
                "PartitionKey eq @pk and RowKey ge @first and RowKey le @last",
                {"pk": detection, "first": pending[0], "last": pending[-1]},
                select=["RowKey"],
                page_size=BASELINE_PAGE,
            )
            for read, entity in enumerate(rows, start=1):
                row_key = entity["RowKey"]
                while done < len(pending) and pending[done] <= row_key:
                    if pending[done] == row_key:
                        found.add(wanted[row_key])
                    done += 1
                if done == len(pending) or (
                    read % BASELINE_PAGE == 0 and read // BASELINE_PAGE >= len(pending) - done
                ):
                    break
            else:
                done = len(pending)  # the range is read to its end: whatever was not met is absent
        found.update(wanted[k] for k in pending[done:] if self.store.get(BASELINE, detection, k))
        return frozenset(found)

    def seen_events(self, detection: str, earliest: datetime, latest: datetime) -> frozenset[str]:
        seen: set[str] = set()
        for day in _days(earliest, latest):
            for entity in self.store.query(
                SEEN, "PartitionKey eq @pk", {"pk": _seen_partition(detection, day)}
            ):
                seen.add(entity["EventId"])
        return frozenset(seen)

    # --- outbox

    def enqueue(self, entries: Sequence[OutboxEntry]) -> None:
        """Put new alerts in the outbox, uncommitted (see `new_entry`), in batch transactions."""
        self.store.insert_many(OUTBOX, (self._outbox_entity(entry) for entry in entries))

    def outbox(self, *, uncommitted_only: bool = False) -> Iterator[OutboxEntry]:
        """The outbox's entries; `uncommitted_only`: those a crash left before their commit (the
        service filters, so a delivery backlog is not read, with its payloads, to find none)."""
        query_filter = "PartitionKey eq @pk" + (" and Committed eq false" if uncommitted_only else "")
        for entity in self.store.query(OUTBOX, query_filter, {"pk": OUTBOX_PARTITION}):
            yield OutboxEntry(
                alert=alerts.from_json(unpack(entity)),
                committed=bool(entity["Committed"]),
                status=entity["Status"],
                pending_targets=tuple(json.loads(entity["PendingTargets"])),
                attempts=int(entity["Attempts"]),
                next_attempt_at=entity["NextAttemptAt"],
                last_error=entity.get("LastError") or None,
                etag=entity["etag"],
                waiver=entity.get("Waiver") or None,
                delivered_to=tuple(json.loads(entity.get("DeliveredTo") or "[]")),
            )

    def commit(
        self, entries: Sequence[OutboxEntry], dedupe: str, clamp: tuple[datetime, datetime]
    ) -> list[OutboxEntry]:
        """Make the alerts part of the dedupe memory and of history; idempotent. Each step is
        done for every alert (batched per partition) before the next starts, so a crash leaves
        the outbox uncommitted until the markers and the history are all in place.

        The markers are claims: created, never overwritten. An alert whose markers are all held
        by another alert (a tick that stalled past its lease evaluated the same rows as the tick
        that took over) is a duplicate: it leaves the outbox and never reaches history. Returns
        the entries committed."""
        # Once-per-principal alerts go into the baseline; the others (and waived ones, which must
        # alert again when their waiver ends) are remembered by their events.
        to_baseline = [dedupe == "principal" and e.status != "waived" for e in entries]
        markers = {
            entry.alert.alert_id: (
                [(BASELINE, _baseline_entity(entry.alert))] if yes
                else [(SEEN, m) for m in _seen_entities(entry.alert, clamp)]
            )
            for entry, yes in zip(entries, to_baseline, strict=True)
        }  # fmt: skip
        held_by_others: set[tuple[str, str, str]] = set()
        for table in (BASELINE, SEEN):
            # The parts of one split finding share a baseline marker, claimed by the first part:
            # a transaction takes a row once.
            claims: dict[tuple[str, str], dict[str, Any]] = {}
            for table_markers in markers.values():
                for t, m in table_markers:
                    if t == table:
                        claims.setdefault((m["PartitionKey"], m["RowKey"]), m)
            held_by_others.update(
                (table, held["PartitionKey"], held["RowKey"])
                for held in self.store.claim_many(table, claims.values())
                if _claimant(held) not in markers
            )

        def duplicate(entry: OutboxEntry) -> bool:
            claims = markers[entry.alert.alert_id]
            return all((t, m["PartitionKey"], m["RowKey"]) in held_by_others for t, m in claims)

        kept = [entry for entry in entries if not duplicate(entry)]
        self.discard([entry for entry in entries if duplicate(entry)])
        self.history.write(
            entity
            for entry in kept
            for entity in history_store.alert_entities(
                entry.alert,
                status=entry.status,
                delivery="pending" if entry.pending_targets else "not routed",
                payload=pack(alerts.to_json(entry.alert)),
                waiver=entry.waiver,
            )
        )
        committed = [OutboxEntry(**{**_fields(entry), "committed": True, "etag": None}) for entry in kept]
        self.store.upsert_many(OUTBOX, (self._outbox_entity(entry) for entry in committed))
        return committed

    def discard(self, entries: Sequence[OutboxEntry]) -> None:
        """Take entries out of the outbox: committed ones that nothing will deliver (waived, or
        below every webhook's severity; history and dedupe markers hold them now, and every
        tick's delivery step reads the whole outbox), and duplicates that another alert holds."""
        self.store.delete_many(OUTBOX, ((OUTBOX_PARTITION, e.alert.alert_id) for e in entries))

    def close(self, entry: OutboxEntry, delivery: str, reason: str, now: datetime) -> None:
        """An alert no configured webhook still waits for leaves the outbox; its history says why
        (`delivery`: "delivered" when some webhook has it, else "undeliverable")."""
        self.store.delete(OUTBOX, OUTBOX_PARTITION, entry.alert.alert_id)
        self.history.record_delivery(
            entry.alert.alert_id, delivery=delivery, attempts=entry.attempts, error=reason, now=now
        )

    def record_attempt(
        self,
        entry: OutboxEntry,
        delivered: tuple[str, ...],
        error: str | None,
        next_at: datetime,
        now: datetime,
    ) -> None:
        remaining = tuple(t for t in entry.pending_targets if t not in delivered)
        updated = OutboxEntry(
            **{
                **_fields(entry),
                "pending_targets": remaining,
                "delivered_to": entry.delivered_to + delivered,
                "attempts": entry.attempts + 1,
                "next_attempt_at": next_at,
                "last_error": error,
            }
        )
        # The outbox first: until it knows, a crash makes the next tick post the card again.
        # A crash before the history write leaves only the history's delivery status behind.
        if remaining:
            self.store.replace(OUTBOX, self._outbox_entity(updated), entry.etag)
        else:
            self.store.delete(OUTBOX, OUTBOX_PARTITION, entry.alert.alert_id)
        self.history.record_delivery(
            entry.alert.alert_id,
            delivery="retrying" if remaining else "delivered",
            attempts=updated.attempts,
            error=error,
            now=now,
        )

    # --- entities

    @staticmethod
    def _outbox_entity(entry: OutboxEntry) -> dict[str, Any]:
        return {
            "PartitionKey": OUTBOX_PARTITION,
            "RowKey": entry.alert.alert_id,
            "Committed": entry.committed,
            "Status": entry.status,
            "PendingTargets": json.dumps(list(entry.pending_targets)),
            "Attempts": entry.attempts,
            "NextAttemptAt": entry.next_attempt_at,
            "LastError": entry.last_error or "",
            "Waiver": entry.waiver or "",
            "DeliveredTo": json.dumps(list(entry.delivered_to)),
            **pack(alerts.to_json(entry.alert)),
        }


def new_entry(
    alert: Alert, targets: Iterable[str], now: datetime, status: str = "new", waiver: str | None = None
) -> OutboxEntry:
    """An alert as it enters the outbox: uncommitted, due now."""
    return OutboxEntry(
        alert=alert,
        committed=False,
        status=status,
        pending_targets=tuple(targets),
        attempts=0,
        next_attempt_at=now,
        last_error=None,
        etag=None,
        waiver=waiver,
    )


def _baseline_entity(alert: Alert) -> dict[str, Any]:
    finding = alert.finding
    return {
        "PartitionKey": finding.detection,
        "RowKey": key(finding.baseline_key),
        "Principal": finding.principal.label,
        **({"Subject": finding.subject} if finding.subject is not None else {}),
        "FirstAlertId": alert.alert_id,
        "FirstSeen": finding.first_time,
    }


def _seen_entities(alert: Alert, clamp: tuple[datetime, datetime]) -> list[dict[str, Any]]:
    finding = alert.finding
    partition = _seen_partition(finding.detection, _clamp(finding.last_time, *clamp).date())
    return [
        {"PartitionKey": partition, "RowKey": key(event_id), "EventId": event_id, "AlertId": alert.alert_id}
        for event_id in finding.event_ids
    ]


def _claimant(marker: Mapping[str, Any]) -> str:
    """The alert a seen-event or baseline marker belongs to."""
    return marker.get("AlertId") or marker.get("FirstAlertId") or ""


def _fields(entry: OutboxEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in OutboxEntry.__dataclass_fields__}


def _seen_partition(detection: str, day: date) -> str:
    return f"{detection}|{day.isoformat()}"


def _days(earliest: datetime, latest: datetime) -> list[date]:
    first, last = earliest.date(), latest.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _clamp(value: datetime, low: datetime, high: datetime) -> datetime:
    return min(max(value, low), high)
