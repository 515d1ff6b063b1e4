"""One monitoring tick: the imperative shell around the pure detections.

take the tick lease -> recover the outbox -> per detection: watermark ->
query -> evaluate -> waivers -> store alerts -> advance watermark (the critical detections first,
and what they stored is delivered at once); deliver the rest, then remind of waivers
about to end. A query that fails leaves its watermark where it was (the next tick reads the
same rows); a Teams outage only delays delivery; a tick that finds another running stands back.

The tick lives within the function timeout (TickBudget): every query is bounded, a query that
could not finish before the delivery reserve is not started (it counts as failed, and runs next
tick), so delivery and the failure count that feeds source-silent are always reached.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitors import alerts, blindness, cards, health, watermark
from monitors.adapters.log_analytics import LogsReader, QueryFailed
from monitors.adapters.table_store import StateStore
from monitors.adapters.teams import PostResult, TeamsPoster
from monitors.detections import DETECTIONS, source_silent
from monitors.detections.base import Detection, detection_context
from monitors.lease import Lease, LeaseLost
from monitors.model import Alert, Finding, Severity
from monitors.pipeline import run_detection
from monitors.settings import Settings, Webhook
from monitors.state import AlertState, OutboxEntry, new_entry
from monitors.waivers import WaiverBook

log = logging.getLogger("monitors.tick")

DELIVERY_BUDGET_S = 120.0  # leave the rest of the function timeout to the next tick


@dataclass(frozen=True, slots=True, kw_only=True)
class TickBudget:
    """How one tick spends the function timeout. Without a bound, one slow query retried by the
    SDK (4 x the service's 180 s server timeout) outlives the 540 s timeout: the host kills the
    tick before it delivers anything or counts the failure."""

    function_timeout_s: float = 540.0  # host.json functionTimeout, 00:09:00
    query_timeout_s: int = 60  # the service's server timeout for each attempt (Prefer: wait)
    # azure-core starts no retry this long after the query began: a throttled query (429, answered
    # at once) is retried as before, a timed-out one (504 after query_timeout_s) once.
    retry_window_s: float = 110.0
    read_slack_s: float = 10.0  # the answer's transfer after the server timeout
    # Delivery (DELIVERY_BUDGET_S), the failure count, the lease release, and the host's margin.
    reserve_s: float = DELIVERY_BUDGET_S + 60.0

    @property
    def query_worst_s(self) -> float:
        """The longest one query can take: the retry window, then one more attempt."""
        return self.retry_window_s + self.query_timeout_s + self.read_slack_s

    @property
    def detect_s(self) -> float:
        """Seconds from the start of the tick after which no query may start."""
        return self.function_timeout_s - self.reserve_s - self.query_worst_s


# The waiver hook: returns a reason when an accepted exception covers the finding.
WaiverCheck = Callable[[Finding, datetime], str | None]


def no_waivers(finding: Finding, now: datetime) -> str | None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    logs: LogsReader
    store: StateStore
    teams: TeamsPoster
    waivers: WaiverCheck = no_waivers
    budget: TickBudget = field(default_factory=TickBudget)


@dataclass(slots=True, kw_only=True)
class TickReport:
    rows: dict[str, int] = field(default_factory=dict)
    skipped_rows: dict[str, int] = field(default_factory=dict)
    findings: int = 0
    alerts_stored: int = 0
    waived: int = 0
    recovered: int = 0
    delivered: int = 0
    retried: int = 0
    delivery_failures: int = 0
    deferred: int = 0  # due alerts tried before and not now: every webhook they go to refused this tick
    undeliverable: int = 0  # alerts no configured webhook takes any more: history says why
    unread_seconds: int = 0  # ingestion seconds too dense for one result: alerted, not read
    reminders_sent: int = 0  # waiver expiry reminders that reached every channel they go to
    reminder_failures: int = 0
    query_errors: list[str] = field(default_factory=list)
    durations_s: dict[str, float] = field(default_factory=dict)
    new_alerts: list[str] = field(default_factory=list)
    stood_back: str | None = None  # why this tick did nothing: another tick held the lease

    def summary(self) -> str:
        """One structured line per tick: what App Insights queries and on-call read."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return json.dumps({"event": "tick", **data}, sort_keys=True, default=str)


def run_tick(services: Services, detections: Sequence[Detection], now: datetime) -> TickReport:
    report = TickReport()
    try:
        lease = Lease.acquire(services.store, services.settings.workspace_id, now)
    except LeaseLost as busy:
        report.stood_back = str(busy)
        log.warning("another tick is running, this one stands back: %s", busy)
        _record_health(services, now, report)
        return report
    try:
        _run_steps(services, detections, now, report, lease)
    except LeaseLost as lost:
        report.stood_back = f"lost the lease mid-tick: {lost}"
        log.error("tick stopped: %s", report.stood_back)
    finally:
        lease.release()
    _record_health(services, now, report)
    log.info(report.summary())
    return report


def _record_health(services: Services, now: datetime, report: TickReport) -> None:
    """How the tick ended, for `python -m monitors status` and the history page. Never fails the
    tick: its summary line, which the watchdog reads, matters more."""
    try:
        health.record_tick(
            services.store, services.settings.workspace_id, now, len(report.query_errors), report.stood_back
        )
    except Exception as error:
        log.warning("tick outcome not recorded in the health table: %s", error)


def _run_steps(
    services: Services, detections: Sequence[Detection], now: datetime, report: TickReport, lease: Lease
) -> None:
    state = AlertState(services.store)
    settings = services.settings
    late = timedelta(hours=settings.late_arrival_hours)
    started = time.perf_counter()
    services = replace(services, logs=_Budgeted(services.logs, time.monotonic() + services.budget.detect_s))
    throttled: set[str] = set()  # webhooks that said 429/5xx/unreachable: not again this tick

    report.recovered = _recover(state, now, late)
    try:
        latest = watermark.latest_ingestion(services.logs, now, late)
    except QueryFailed as error:  # every window holds still: part of the monitor is blind
        report.query_errors.append(f"latest-ingestion: {error}")
        log.error("the newest ingestion time is unknown, every window holds still: %s", error)
        latest = watermark.NOTHING_INGESTED
    critical = [d for d in detections if d.severity is Severity.CRITICAL]  # break-glass use
    for detection in critical:
        _detect(services, state, detection, now, late, latest, report, lease)
    if report.alerts_stored:  # on-call hears of them before the slower queries run
        _deliver(services, state, now, report, throttled)
    for detection in (d for d in detections if d not in critical):
        lease.keep()
        _detect(services, state, detection, now, late, latest, report, lease)
    # --- source-silent: queries failing tick after tick are an alert of their own
    blind = blindness.watch_queries(
        services.store, state, settings, report.query_errors, now,
        lambda alert: _targets(alert, settings.webhooks),
    )  # fmt: skip
    report.alerts_stored += len(blind)
    report.new_alerts += blind
    # --- end source-silent
    report.durations_s["detect"] = round(time.perf_counter() - started, 3)

    lease.keep()
    started = time.perf_counter()
    _deliver(services, state, now, report, throttled)
    _remind(services, detections, now, report, throttled)
    report.durations_s["deliver"] = round(time.perf_counter() - started, 3)


@dataclass(frozen=True, slots=True)
class _Budgeted:
    """The tick's LogsReader: a query that could outlast the detection budget is not started."""

    logs: LogsReader
    stop_at: float  # time.monotonic() after which no query starts

    def query(self, kql: str, start: datetime, end: datetime) -> list[dict]:
        if time.monotonic() >= self.stop_at:
            raise QueryFailed("not run: the tick's time budget is spent; it runs next tick")
        return self.logs.query(kql, start, end)


def _recover(state: AlertState, now: datetime, late: timedelta) -> int:
    """Finish alerts a crashed tick stored but did not commit, before anything reads the memory."""
    dedupe = {d.id: d.dedupe for d in DETECTIONS}  # also of a detection switched off since
    by_dedupe: dict[str, list[OutboxEntry]] = {}
    for entry in state.outbox(uncommitted_only=True):
        by_dedupe.setdefault(dedupe.get(entry.alert.finding.detection, "event"), []).append(entry)
    for how, entries in by_dedupe.items():
        state.commit(entries, how, (now - 2 * late, now))
    return sum(len(entries) for entries in by_dedupe.values())


def _detect(
    services: Services,
    state: AlertState,
    detection: Detection,
    now: datetime,
    late: timedelta,
    latest_ingested: datetime | None,
    report: TickReport,
    lease: Lease,
) -> None:
    settings = services.settings
    mark = watermark.read(services.store, settings.workspace_id, detection.id)
    window = watermark.next_window(mark.ingested_up_to, now, late, latest_ingested)
    context = detection_context(settings)
    try:
        run = run_detection(detection, services.logs, window, context, now, memory=state)
    except QueryFailed as error:
        report.query_errors.append(f"{detection.id}: {error}")
        log.error(
            "%s: query failed, watermark stays at %s: %s", detection.id, window.start.isoformat(), error
        )
        return
    report.rows[detection.id] = run.rows
    report.skipped_rows[detection.id] = run.skipped
    if run.unread:  # seconds too dense to read: alerted as such, so the watermark can move on
        report.unread_seconds += len(run.unread)
        lease.confirm()
        blind = blindness.store_episodes(state, [
            source_silent.unread_window_finding(
                settings.workspace_id, detection.id, detection.severity, u.start, u.end, u.reason
            )
            for u in run.unread
        ], lambda alert: _targets(alert, settings.webhooks), now)  # fmt: skip
        report.alerts_stored += len(blind)
        report.new_alerts += blind
    report.findings += len(run.findings)
    seen: frozenset[str] | None = None
    entries = []
    for alert in alerts.make_alerts(run.findings, now):
        waiver = services.waivers(alert.finding, now)
        if waiver and detection.dedupe == "principal":
            # Waived alerts stay out of the baseline and are remembered by their events instead:
            # rows read again after a crash must not store the same waived alert twice.
            if seen is None:
                seen = state.seen_events(detection.id, window.earliest_time, max(now, window.end))
            if set(alert.finding.event_ids) <= seen:
                continue
        targets = () if waiver else _targets(alert, settings.webhooks)
        entries.append(new_entry(alert, targets, now, status="waived" if waiver else "new", waiver=waiver))
    if entries:
        lease.confirm()  # a tick that stalled past its lease must not store what its successor did
        state.enqueue(entries)
        entries = state.commit(entries, detection.dedupe, (window.earliest_time, now))
    report.alerts_stored += len(entries)
    report.waived += sum(entry.status == "waived" for entry in entries)
    report.new_alerts += [entry.alert.alert_id for entry in entries]
    watermark.advance(services.store, settings.workspace_id, detection.id, mark, window.end)


def _targets(alert: Alert, webhooks: Sequence[Webhook]) -> tuple[str, ...]:
    return tuple(w.name for w in webhooks if alert.finding.severity.at_least(w.min_severity))


def _route(entry: OutboxEntry, webhooks: Sequence[Webhook]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(where the entry goes now, the webhooks it waited for that are no longer configured). An
    alert stored for a webhook since renamed or removed goes to today's webhooks for its severity
    that do not have it yet, never nowhere: it would wait in the outbox for ever."""
    configured = {w.name for w in webhooks}
    kept = tuple(t for t in entry.pending_targets if t in configured)
    vanished = tuple(t for t in entry.pending_targets if t not in configured)
    if not vanished:
        return kept, ()
    added = tuple(t for t in _targets(entry.alert, webhooks) if t not in kept and t not in entry.delivered_to)
    return kept + added, vanished


def _deliver(
    services: Services,
    state: AlertState,
    now: datetime,
    report: TickReport,
    throttled: set[str],
) -> None:
    """Post what is due, most severe first. Backoff spares a failing webhook, but must not keep
    alerts waiting once it works again: while alerts wait, the first of them is tried every tick,
    and as soon as a webhook accepts a card, everything waiting for it goes too."""
    outbox = list(state.outbox())
    state.discard([e for e in outbox if e.committed and not e.pending_targets])
    pending = sorted((e for e in outbox if e.committed and e.pending_targets), key=_priority)
    due = [e for e in pending if e.next_attempt_at <= now]
    waiting = [e for e in pending if e.next_attempt_at > now]
    if waiting and not due:
        due, waiting = waiting[:1], waiting[1:]  # a probe: one card per tick tells us Teams is back
    # Every detection's card, also of one switched off since its alert was stored.
    post = _Poster(services, {d.id: d for d in DETECTIONS}, now, report, throttled)
    deadline = time.monotonic() + DELIVERY_BUDGET_S
    for entry in due:
        if time.monotonic() > deadline:
            return
        post(state, entry)
    for entry in waiting:
        if time.monotonic() > deadline:
            return
        if post.healthy.intersection(entry.pending_targets):
            post(state, entry)


@dataclass(slots=True)
class _Poster:
    """One delivery attempt of one outbox entry to each of its pending webhooks."""

    services: Services
    detections: dict[str, Detection]
    now: datetime
    report: TickReport
    throttled: set[str]  # webhooks that refused this tick: not asked again until the next
    healthy: set[str] = field(default_factory=set)  # webhooks that accepted a card this tick

    def __call__(self, state: AlertState, entry: OutboxEntry) -> None:
        settings = self.services.settings
        detection = self.detections.get(entry.alert.finding.detection)
        targets, vanished = _route(entry, settings.webhooks)
        if detection is None or not targets:
            self._close(state, entry, detection, vanished)
            return
        if vanished:  # the settings changed since the alert was stored: today's webhooks take it
            log.warning("alert %s: %s no longer configured; re-routed to %s", entry.alert.alert_id,
                        ", ".join(vanished), ", ".join(targets))  # fmt: skip
            entry = replace(entry, pending_targets=targets)
        if entry.attempts and self.throttled.issuperset(entry.pending_targets):
            # Every webhook it goes to refused a card this tick, and its history already says why
            # it waits: no attempt, nothing to record. A record is six requests; a backlog of
            # thousands would pay them every tick of an outage.
            self.report.deferred += 1
            return
        links = cards.CardLinks(history_url=None, portal_url=settings.portal_url)
        build = _card_builder(entry.alert, detection, _links(settings, entry.alert, links))
        webhooks = {w.name: w for w in settings.webhooks}
        delivered, errors, retry_after = [], [], None
        for name in entry.pending_targets:
            webhook = webhooks[name]
            if name in self.throttled:
                errors.append(f"{name}: deferred, the webhook refused an earlier message this tick")
                continue
            result = _post_fitting(self.services.teams, webhook, build)
            if result.delivered:
                delivered.append(name)
                self.healthy.add(name)
                continue
            errors.append(f"{name}: {result.error}")
            retry_after = max(retry_after or 0.0, result.retry_after_s or 0.0) or None
            if _refused_for_now(result):
                self.throttled.add(name)
        state.record_attempt(
            entry,
            tuple(delivered),
            "; ".join(errors) or None,
            alerts.next_attempt(entry.attempts + 1, self.now, retry_after),
            self.now,
        )
        if delivered and len(delivered) == len(entry.pending_targets):
            self.report.delivered += 1
        if entry.attempts:
            self.report.retried += 1
        if errors:
            self.report.delivery_failures += 1

    def _close(
        self, state: AlertState, entry: OutboxEntry, detection: Detection | None, vanished: tuple[str, ...]
    ) -> None:
        """Nothing configured will take the alert any more: it leaves the outbox, its history says why."""
        if detection is None:
            reason = f"its detection {entry.alert.finding.detection!r} no longer exists"
        else:
            reason = f"no configured webhook takes {entry.alert.finding.severity.value} alerts any more"
        reason += f" ({', '.join(vanished)} removed)" if vanished else ""
        if entry.delivered_to:  # one channel has it; the rest are gone
            state.close(
                entry, "delivered", f"delivered to {', '.join(entry.delivered_to)}; {reason}", self.now
            )
            return
        state.close(entry, "undeliverable", f"undeliverable: {reason}", self.now)
        self.report.undeliverable += 1
        log.error("alert %s is undeliverable: %s", entry.alert.alert_id, reason)


def _remind(
    services: Services,
    detections: Sequence[Detection],
    now: datetime,
    report: TickReport,
    throttled: set[str],
) -> None:
    """One card per waiver about to end, to every channel that would receive its detection's alerts.

    A waiver is marked reminded only when all those channels have the card, so a Teams outage
    retries on the next tick (until the waiver ends); a channel that already has it is not
    posted to again. The waivers table is small: one filtered query per tick.
    """
    settings = services.settings
    book = WaiverBook(services.store)
    by_id = {d.id: d for d in detections}
    history_url = f"{settings.history_base_url}/api/alerts" if settings.history_base_url else None
    links = cards.CardLinks(history_url=history_url, portal_url=settings.portal_url)
    for waiver in book.due_reminders(now, settings.waiver_reminder_days):
        detection = by_id.get(waiver.detection)
        if detection is None:
            continue  # a detection switched off since: nothing will alert when the waiver ends
        targets = [w for w in settings.webhooks if detection.severity.at_least(w.min_severity)]
        message = cards.build_waiver_reminder(waiver, links)
        delivered, errors = [], []
        for webhook in targets:
            if webhook.name in waiver.reminder_sent_to:
                continue
            if webhook.name in throttled:
                errors.append(f"{webhook.name}: deferred, the webhook refused an earlier message this tick")
                continue
            result = services.teams.post(webhook, message)
            if result.delivered:
                delivered.append(webhook.name)
                continue
            errors.append(f"{webhook.name}: {result.error}")
            if _refused_for_now(result):
                throttled.add(webhook.name)
        if targets and (delivered or not errors):
            book.record_reminder(waiver, delivered, not errors, now)
        if delivered and not errors:
            report.reminders_sent += 1
        if errors:
            report.reminder_failures += 1
            log.warning(
                "waiver reminder for %s/%s not delivered, retried next tick: %s",
                waiver.detection, waiver.principal, "; ".join(errors),
            )  # fmt: skip


def _card_builder(alert: Alert, detection: Detection, links: cards.CardLinks) -> Callable[[int], dict]:
    """The alert's card at a given size budget, built once per budget."""
    return functools.cache(lambda budget: cards.build_message(alert, detection, links, max_bytes=budget))


def _post_fitting(teams: TeamsPoster, webhook: Webhook, build: Callable[[int], dict]) -> PostResult:
    """Post the card; a 413 means this flow's limit is below ours, so halve the card and try again
    (fewer events shown, values shortened; the alert history keeps everything)."""
    budget = cards.MAX_MESSAGE_BYTES
    result = teams.post(webhook, build(budget))
    while result.status == 413 and budget > cards.SMALLEST_MESSAGE_BYTES:
        budget //= 2
        result = teams.post(webhook, build(budget))
    return result


def _refused_for_now(result: PostResult) -> bool:
    """Throttled, failing or unreachable: post nothing more to that webhook this tick."""
    return result.status is None or result.status == 429 or result.status >= 500


def _priority(entry: OutboxEntry) -> tuple[int, datetime]:
    return (-entry.alert.finding.severity.rank, entry.alert.created_at)


def _links(settings: Settings, alert: Alert, base: cards.CardLinks) -> cards.CardLinks:
    if not settings.history_base_url:
        return base
    return cards.CardLinks(
        history_url=f"{settings.history_base_url}/api/alerts/{alert.alert_id}", portal_url=base.portal_url
    )
