"""One tick at a time per workspace: an ETag-guarded lease in the watermarks table.

The Functions timer's singleton lock is not a guarantee (two hosts, a slow tick overrunning
the next schedule). Two ticks that read the same watermark and seen events before either
commits would both alert on the same rows. A tick that cannot take the lease stands back; the
watermark it would have read stays put, so the next tick reads those rows.

The lease expires on its own (TTL) so a crashed tick blocks only briefly: shorter than the
default five-minute schedule, so the next scheduled tick after a crash runs. A long tick renews
it between steps, and once more (ETag-guarded) just before it stores alerts, so a tick that
stalled past its expiry and was taken over stores nothing. An expiry further ahead than one
lease length was written by a clock that ran ahead: it is not honoured.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from monitors.adapters.table_store import StaleWrite, StateStore
from monitors.watermark import TABLE

log = logging.getLogger("monitors.lease")
TTL = timedelta(minutes=4)
RENEW_AFTER_S = 60.0
ROW_KEY = "~tick-lease"  # sorts after every detection id in the workspace's partition
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
# Hosts' clocks agree to within this (App Service syncs them). A holder writes its expiry at most
# one TTL ahead of its own clock, so an expiry further ahead than TTL + CLOCK_SKEW comes from a
# clock that ran ahead (and a crashed tick would hold it until then): it is taken over.
CLOCK_SKEW = timedelta(seconds=30)


class LeaseLost(Exception):
    """Another tick holds the lease (or took it over after ours expired)."""


@dataclass(slots=True)
class Lease:
    store: StateStore
    workspace_id: str
    holder: str
    started: datetime  # the tick's clock when it took the lease
    etag: str | None = None
    _started_monotonic: float = field(default_factory=time.monotonic)
    _written_monotonic: float = field(default_factory=time.monotonic)

    @classmethod
    def acquire(cls, store: StateStore, workspace_id: str, now: datetime) -> Lease:
        """Take the lease or raise LeaseLost naming who holds it and until when."""
        lease = cls(store, workspace_id, holder=uuid.uuid4().hex, started=now)
        current = store.get(TABLE, workspace_id, ROW_KEY)
        if current is None:
            if not store.insert(TABLE, lease._entity(now + TTL)):
                raise LeaseLost("another tick created the lease first")
            lease.etag = (store.get(TABLE, workspace_id, ROW_KEY) or {}).get("etag")
            return lease
        if now < current["ExpiresAt"] <= now + TTL + CLOCK_SKEW:
            raise LeaseLost(f"held by tick {current['Holder']} until {current['ExpiresAt'].isoformat()}")
        if current["ExpiresAt"] > now:  # no tick writes an expiry that far ahead of the clocks
            log.warning(
                "tick lease of %s expires %s, beyond one lease length (%s) from now: taken over",
                current["Holder"], current["ExpiresAt"].isoformat(), TTL,
            )  # fmt: skip
        lease.etag = current["etag"]
        lease._write(now + TTL)
        return lease

    def keep(self) -> None:
        """Between steps: renew when a minute has passed, so a slow tick does not lose it to the TTL."""
        if time.monotonic() - self._written_monotonic >= RENEW_AFTER_S:
            self.confirm()

    def confirm(self) -> None:
        """Just before storing alerts: renew with our ETag, so a tick that stalled past its expiry
        and was taken over raises LeaseLost here instead of storing what its successor stored."""
        elapsed = timedelta(seconds=time.monotonic() - self._started_monotonic)
        self._write(self.started + elapsed + TTL)

    def release(self) -> None:
        """Let the next tick in at once. Never raises: a lease taken over meanwhile is not ours, and
        one we cannot write (storage down) expires on its own; the tick's own error matters more."""
        try:
            self._write(RELEASED)
        except LeaseLost:
            pass
        except Exception as error:  # runs in `finally`: must not mask the tick's own failure
            log.warning("tick lease not released (it expires by itself within %s): %s", TTL, error)

    def _write(self, expires_at: datetime) -> None:
        try:
            self.store.replace(TABLE, self._entity(expires_at), self.etag)
        except StaleWrite:
            raise LeaseLost("another tick took the lease over") from None
        self.etag = (self.store.get(TABLE, self.workspace_id, ROW_KEY) or {}).get("etag")
        self._written_monotonic = time.monotonic()

    def _entity(self, expires_at: datetime) -> dict[str, object]:
        return {
            "PartitionKey": self.workspace_id,
            "RowKey": ROW_KEY,
            "Holder": self.holder,
            "ExpiresAt": expires_at,
        }
