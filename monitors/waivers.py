"""Waivers: accepted exceptions, one detection for one principal, approved and time-boxed.

A waiver says "this account doing this is known and accepted until then": a service account
awaiting migration to a workload identity, say. While it is active, the account's findings for
that detection are still stored in the alert history (status "waived", naming the waiver) but
not posted to Teams. Every waiver expires (at most WAIVER_MAX_DAYS ahead); the channels that
would receive the detection's alerts get one reminder WAIVER_REMINDER_DAYS before, and once it
ends the account's next finding alerts again.

Rules, enforced when a waiver is added:
- break-glass-use can never be waived: every use of an emergency-access account must be seen;
  nor can break-glass-account-changed (tampering before use), break-glass-weak-method (the
  account must work) or source-silent (blindness).
- the principal is an object id (GUID, stored lower-case) or a UPN (stored lower-case);
- owner, approver, reason and who records it are required, bounded, one line each;
- the approver is not the person who records it (four eyes; names compared case-insensitively);
- the expiry is in the future and at most `max_days` ahead.

Storage: table "waivers", PartitionKey = detection, RowKey = key(principal): one waiver per
detection and principal; a new one replaces an ended (expired or revoked) one. Table
"waiveraudit", PartitionKey "audit", RowKey = inverted time + random suffix (newest first):
every add, replace, revoke and reminder, with who, when and what. Table "waiverexpiry",
PartitionKey "expiry", RowKey = expiry time | detection | key(principal): the tick finds the
waivers about to end with a range read of it instead of a scan of the waivers table; an entry
left by a renewed or revoked waiver is told apart by reading the waiver itself. The validation
and matching rules are pure functions; WaiverBook is the thin store code around them.
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors.adapters.table_store import StaleWrite, StateStore, key
from monitors.alerts import alert_id_prefix
from monitors.detections import DETECTIONS
from monitors.model import Finding

TABLE = "waivers"
AUDIT_TABLE = "waiveraudit"
AUDIT_PARTITION = "audit"
POINT_READS = 10  # findings of one detection per tick checked by point reads; beyond, one partition read
EXPIRY_TABLE = "waiverexpiry"
EXPIRY_PARTITION = "expiry"

DEFAULT_MAX_DAYS = 180
DEFAULT_REMINDER_DAYS = 7
# Detections whose findings must always reach a person, whatever the table says.
NEVER_WAIVED = {
    "break-glass-use": (
        "break-glass-use can never be waived: every use of an emergency-access account must alert, "
        "a planned drill included. Acknowledge the alert with the drill's or incident's reference instead."
    ),
    "break-glass-account-changed": (
        "break-glass-account-changed can never be waived: a change to an emergency-access account is how "
        "it is weakened before it is used. Acknowledge the alert with the change's reference instead."
    ),
    "break-glass-weak-method": (
        "break-glass-weak-method can never be waived: an emergency-access account must work when it is "
        "needed. Fix its methods or run the drill; acknowledge the alert with the change's reference."
    ),
    "source-silent": (
        "source-silent can never be waived: a blind monitor must say so. Set a table's hours to 0 in "
        "SOURCE_SILENCE_HOURS if it is not exported on purpose, or switch the detection off."
    ),
}
MAX_NAME_CHARS = 128  # owner, approver, who recorded or revoked
MIN_REASON_CHARS = 10  # "ok" is not a reason someone can review in six months
MAX_REASON_CHARS = 500
MONITOR = "monitor"  # the `by` of changes the tick makes (reminders)

_UPN = re.compile(r"^[A-Za-z0-9._%+'#-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class WaiverRefused(ValueError):
    """A waiver change was refused; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiver:
    detection: str
    principal: str  # object id (lower-case GUID) or lower-cased UPN
    owner: str
    reason: str
    approver: str
    created_by: str
    created_at: datetime
    expires_at: datetime  # active strictly before this moment
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None
    reminded_at: datetime | None = None  # the expiry reminder reached every channel
    reminder_sent_to: tuple[str, ...] = ()  # webhooks that have the reminder (partial delivery)

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def status(self, now: datetime) -> str:
        """Active, expired or revoked, as people read it."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.active(now) else "expired"

    def summary(self) -> str:
        """What the alert history says about a finding this waiver covered."""
        return f"waiver by {self.approver} until {_when(self.expires_at)}: {self.reason}"


# --------------------------------------------------------------------------- pure rules


def normalize_principal(raw: str) -> str:
    """An object id (any GUID spelling) or a UPN, as stored and matched: lower-case."""
    value = raw.strip()
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if len(value) <= 256 and _UPN.match(value):
        return value.lower()
    raise WaiverRefused(f"principal {raw[:80]!r} is neither an object id (GUID) nor a UPN")


def principal_keys(finding: Finding) -> tuple[str, ...]:
    """The values a waiver may name to cover this finding: its object id and its UPN."""
    found = [finding.principal.user_id, finding.principal.user_principal_name]
    return tuple(dict.fromkeys(v.strip().lower() for v in found if v and v.strip()))


def covers(waiver: Waiver, finding: Finding, now: datetime) -> bool:
    return (
        waiver.active(now)
        and waiver.detection == finding.detection
        and finding.detection not in NEVER_WAIVED  # even a row written into the table by hand
        and waiver.principal in principal_keys(finding)
    )


def due_for_reminder(waiver: Waiver, now: datetime, reminder_days: int) -> bool:
    """Active, not yet reminded, and within `reminder_days` of its end (0 turns reminders off)."""
    return (
        reminder_days > 0
        and waiver.active(now)
        and waiver.reminded_at is None
        and now >= waiver.expires_at - timedelta(days=reminder_days)
    )


def check_detection(detection: str, known: Iterable[str]) -> None:
    if detection in NEVER_WAIVED:
        raise WaiverRefused(NEVER_WAIVED[detection])
    waivable = sorted(set(known) - set(NEVER_WAIVED))
    if detection not in waivable:
        raise WaiverRefused(f"unknown detection {detection[:80]!r}; waivable: {', '.join(waivable)}")


def clean_text(value: str, what: str, *, minimum: int = 1, maximum: int = MAX_NAME_CHARS) -> str:
    """One line of printable text: whitespace runs become one space; controls are refused."""
    text = " ".join(value.split())
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text):
        raise WaiverRefused(f"{what} contains control or invisible characters")
    if len(text) < minimum:
        raise WaiverRefused(
            f"{what} is required" if minimum <= 1 else f"{what} needs at least {minimum} characters"
        )
    if len(text) > maximum:
        raise WaiverRefused(f"{what} is {len(text)} characters; at most {maximum}")
    return text


def new_waiver(
    *,
    detection: str,
    principal: str,
    owner: str,
    reason: str,
    approver: str,
    created_by: str,
    expires_at: datetime,
    now: datetime,
    max_days: int,
    known_detections: Iterable[str],
) -> Waiver:
    """Validate a request and return the waiver it would create; raise WaiverRefused if it may not."""
    check_detection(detection, known_detections)
    owner = clean_text(owner, "owner")
    approver = clean_text(approver, "approver")
    created_by = clean_text(created_by, "who records the waiver (--by)")
    if approver.casefold() == created_by.casefold():
        raise WaiverRefused(
            f"{approver!r} cannot approve a waiver they record: ask someone else to approve it"
        )
    expires_at = _utc(expires_at)
    if expires_at <= now:
        raise WaiverRefused(f"expiry {_when(expires_at)} is not in the future")
    if expires_at > now + timedelta(days=max_days):
        raise WaiverRefused(
            f"expiry {_when(expires_at)} is more than {max_days} days ahead (WAIVER_MAX_DAYS); "
            "choose an earlier date and renew the waiver if it is still needed then"
        )
    return Waiver(
        detection=detection,
        principal=normalize_principal(principal),
        owner=owner,
        reason=clean_text(reason, "reason", minimum=MIN_REASON_CHARS, maximum=MAX_REASON_CHARS),
        approver=approver,
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )


def expiry_from(*, expires: str | None = None, days: int | None = None, now: datetime) -> datetime:
    """`--expires 2026-12-31` (00:00 UTC that day; an ISO time is taken as given) or `--days N`."""
    if (expires is None) == (days is None):
        raise WaiverRefused("give either an expiry date or a number of days")
    if days is not None:
        if days < 1:
            raise WaiverRefused("days must be at least 1")
        return now + timedelta(days=days)
    try:
        return _utc(datetime.fromisoformat(str(expires).strip()))
    except ValueError:
        raise WaiverRefused(f"expiry {expires!r} is not a date like 2026-12-31") from None


# --------------------------------------------------------------------------- store


class WaiverBook:
    """The waivers table and its audit log. The tick builds one per tick (bootstrap), so what
    `covering` reads is never older than the tick."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._asked: Counter[str] = Counter()  # findings checked per detection, this tick
        self._partitions: dict[str, dict[str, Waiver]] = {}  # detection -> its waivers by row key

    # --- the tick

    def covering(self, finding: Finding, now: datetime) -> str | None:
        """The tick's hook: why an active waiver covers the finding, or None.

        The first POINT_READS findings of a detection are point reads by object id and by UPN
        (alerts are rare); beyond that, the detection's waivers (a few, one partition) are read
        once and consulted in memory, so a first tick with thousands of new alerts does not
        cost two requests each. Either way a waiver added or revoked from the CLI counts from
        the very next tick.
        """
        if finding.detection in NEVER_WAIVED:
            return None
        self._asked[finding.detection] += 1
        for principal in principal_keys(finding):
            if self._asked[finding.detection] > POINT_READS:
                waiver = self._partition(finding.detection).get(key(principal))
            else:
                waiver = self.get(finding.detection, principal)
            if waiver is not None and covers(waiver, finding, now):
                return waiver.summary()
        return None

    def _partition(self, detection: str) -> dict[str, Waiver]:
        if detection not in self._partitions:
            rows = self.store.query(TABLE, "PartitionKey eq @pk", {"pk": detection})
            self._partitions[detection] = {entity["RowKey"]: _from_entity(entity) for entity in rows}
        return self._partitions[detection]

    def due_reminders(self, now: datetime, reminder_days: int) -> list[Waiver]:
        """Active waivers ending within `reminder_days` that still owe a reminder: a range read of
        the expiry index, then a point read of each waiver it names (waivers about to end are few)."""
        if reminder_days <= 0:
            return []
        rows = self.store.query(
            EXPIRY_TABLE,
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @until",
            {
                "pk": EXPIRY_PARTITION,
                "after": f"{_expiry_key_time(now)}~",  # '|' sorts before '~': ending exactly now is out
                "until": f"{_expiry_key_time(now + timedelta(days=reminder_days))}~",
            },
        )
        due = []
        for row in rows:
            waiver = self.get(row["Detection"], row["Principal"])
            current = waiver is not None and row["RowKey"] == _expiry_entity(waiver)["RowKey"]  # not renewed
            if current and waiver is not None and due_for_reminder(waiver, now, reminder_days):
                due.append(waiver)
        return sorted(due, key=_order)

    def record_reminder(
        self, waiver: Waiver, delivered_to: Iterable[str], complete: bool, now: datetime
    ) -> bool:
        """Note the webhooks that have the reminder; when `complete`, stamp reminded_at and audit.

        ETag-guarded against a concurrent revoke or replace: returns False (nothing recorded)
        when the stored waiver is no longer the one the reminder was about.
        """
        entity = self.store.get(TABLE, waiver.detection, key(waiver.principal))
        if entity is None or _from_entity(entity).created_at != waiver.created_at:
            return False
        sent = tuple(dict.fromkeys([*json.loads(entity.get("ReminderSentTo") or "[]"), *delivered_to]))
        changes: dict[str, Any] = {"ReminderSentTo": json.dumps(list(sent))}
        if complete:
            changes["RemindedAt"] = now
        try:
            self.store.replace(TABLE, {**entity, **changes}, entity["etag"])
        except StaleWrite:
            return False
        if complete:
            details = {"expires_at": _iso(waiver.expires_at), "webhooks": ", ".join(sent)}
            self._audit(now, MONITOR, "remind", waiver, details)
        return True

    # --- people (CLI, history page)

    def get(self, detection: str, principal: str) -> Waiver | None:
        entity = self.store.get(TABLE, detection, key(principal))
        return None if entity is None else _from_entity(entity)

    def add(
        self,
        *,
        detection: str,
        principal: str,
        owner: str,
        reason: str,
        approver: str,
        created_by: str,
        expires_at: datetime,
        now: datetime | None = None,
        max_days: int = DEFAULT_MAX_DAYS,
        replace_active: bool = False,
        known_detections: Iterable[str] | None = None,
    ) -> Waiver:
        """Record a waiver; refuse a second active one for the same detection and principal
        unless `replace_active` (a renewal: the old one's terms stay in the audit log)."""
        now = _utc(now or datetime.now(UTC))
        waiver = new_waiver(
            detection=detection, principal=principal, owner=owner, reason=reason, approver=approver,
            created_by=created_by, expires_at=expires_at, now=now, max_days=max_days,
            known_detections=[d.id for d in DETECTIONS] if known_detections is None else known_detections,
        )  # fmt: skip
        existing = self.store.get(TABLE, waiver.detection, key(waiver.principal))
        previous = None if existing is None else _from_entity(existing)
        if previous is not None and previous.active(now) and not replace_active:
            raise WaiverRefused(
                f"{waiver.principal} already has an active {waiver.detection} waiver "
                f"({previous.summary()}); renew it with --replace, or revoke it first"
            )
        # The index first: an entry without its waiver is skipped, a waiver without one never reminded.
        self.store.replace(EXPIRY_TABLE, _expiry_entity(waiver), None)
        try:
            if existing is None:
                if not self.store.insert(TABLE, _to_entity(waiver)):
                    raise StaleWrite("added meanwhile")
            else:
                self.store.replace(TABLE, _to_entity(waiver), existing["etag"])
        except StaleWrite:
            raise WaiverRefused(
                "the waiver changed while this one was being added; run the command again"
            ) from None
        details = _terms(waiver)
        action = "add"
        if previous is not None and previous.active(now):
            action = "replace"
            details["replaced"] = previous.summary()
        self._audit(now, waiver.created_by, action, waiver, details)
        return waiver

    def revoke(
        self, detection: str, principal: str, by: str, reason: str, *, now: datetime | None = None
    ) -> Waiver:
        """End an active waiver now; the account's next finding alerts again."""
        now = _utc(now or datetime.now(UTC))
        by = clean_text(by, "who revokes the waiver (--by)")
        reason = clean_text(reason, "reason")
        normalized = normalize_principal(principal)
        entity = self.store.get(TABLE, detection, key(normalized))
        if entity is None or not (current := _from_entity(entity)).active(now):
            raise WaiverRefused(
                f"no active {detection[:80]} waiver for {normalized}; "
                "`python -m monitors waivers list --all` shows the principals as recorded"
            )
        revoked = replace(current, revoked_at=now, revoked_by=by, revoke_reason=reason)
        try:
            self.store.replace(TABLE, _to_entity(revoked), entity["etag"])
        except StaleWrite:
            raise WaiverRefused("the waiver changed meanwhile; run the command again") from None
        self._audit(now, by, "revoke", revoked, {"reason": reason, "was": current.summary()})
        return revoked

    def list(self, now: datetime, include_inactive: bool = False) -> list[Waiver]:
        """Active waivers (soonest to end first); with include_inactive, ended ones too."""
        rows = self.store.query(TABLE, "PartitionKey ne @none", {"none": ""})
        waivers = [_from_entity(entity) for entity in rows]
        return sorted((w for w in waivers if include_inactive or w.active(now)), key=_order)

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` changes: {at, by, action, detection, principal, details}."""
        limit = max(1, min(limit, 1000))
        found = []
        rows = self.store.query(AUDIT_TABLE, "PartitionKey eq @pk", {"pk": AUDIT_PARTITION}, page_size=limit)
        for entity in rows:
            found.append(
                {
                    "at": _utc(entity["At"]),
                    "by": entity["By"],
                    "action": entity["Action"],
                    "detection": entity["Detection"],
                    "principal": entity["Principal"],
                    "details": json.loads(entity.get("Details") or "{}"),
                }
            )
            if len(found) >= limit:
                break
        return found

    def _audit(self, now: datetime, by: str, action: str, waiver: Waiver, details: dict[str, str]) -> None:
        self.store.insert(
            AUDIT_TABLE,
            {
                "PartitionKey": AUDIT_PARTITION,
                "RowKey": f"{alert_id_prefix(now)}-{secrets.token_hex(6)}",
                "At": now,
                "By": by,
                "Action": action,
                "Detection": waiver.detection,
                "Principal": waiver.principal,
                "Details": json.dumps(details, ensure_ascii=False),
            },
        )


# --------------------------------------------------------------------------- entities


def _to_entity(waiver: Waiver) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": waiver.detection,
        "RowKey": key(waiver.principal),
        "Principal": waiver.principal,
        "Owner": waiver.owner,
        "Reason": waiver.reason,
        "Approver": waiver.approver,
        "CreatedBy": waiver.created_by,
        "CreatedAt": waiver.created_at,
        "ExpiresAt": waiver.expires_at,
        "RevokedBy": waiver.revoked_by or "",
        "RevokeReason": waiver.revoke_reason or "",
        "ReminderSentTo": json.dumps(list(waiver.reminder_sent_to)),
    }
    # Table Storage has no null: an absent moment is an absent property.
    for name, moment in (("RevokedAt", waiver.revoked_at), ("RemindedAt", waiver.reminded_at)):
        if moment is not None:
            entity[name] = moment
    return entity


def _expiry_entity(waiver: Waiver) -> dict[str, Any]:
    return {
        "PartitionKey": EXPIRY_PARTITION,
        "RowKey": f"{_expiry_key_time(waiver.expires_at)}|{waiver.detection}|{key(waiver.principal)}",
        "Detection": waiver.detection,
        "Principal": waiver.principal,
    }


def _expiry_key_time(moment: datetime) -> str:
    """Fixed width, UTC, whole seconds (what any store keeps of a moment): keys sort as moments do."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_entity(entity: dict[str, Any]) -> Waiver:
    def moment(name: str) -> datetime | None:
        value = entity.get(name)
        return _utc(value) if isinstance(value, datetime) else None

    return Waiver(
        detection=entity["PartitionKey"],
        principal=entity["Principal"],
        owner=entity["Owner"],
        reason=entity["Reason"],
        approver=entity["Approver"],
        created_by=entity["CreatedBy"],
        created_at=_utc(entity["CreatedAt"]),
        expires_at=_utc(entity["ExpiresAt"]),
        revoked_at=moment("RevokedAt"),
        revoked_by=entity.get("RevokedBy") or None,
        revoke_reason=entity.get("RevokeReason") or None,
        reminded_at=moment("RemindedAt"),
        reminder_sent_to=tuple(json.loads(entity.get("ReminderSentTo") or "[]")),
    )


def _terms(waiver: Waiver) -> dict[str, str]:
    return {
        "owner": waiver.owner,
        "approver": waiver.approver,
        "reason": waiver.reason,
        "expires_at": _iso(waiver.expires_at),
    }


def _order(waiver: Waiver) -> tuple[datetime, str, str]:
    return (waiver.expires_at, waiver.detection, waiver.principal)


def _utc(moment: datetime) -> datetime:
    """A plain UTC datetime (the SDK returns a subclass; a naive value is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return datetime(*moment.timetuple()[:6], moment.microsecond, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
