"""`make demo`: the monitor end to end on a synthetic tenant, explained as it runs.

Starts the devstack, generates a tenant's logs, runs ticks through the real timer function
(function_app.py) with the real SDK clients, shows the alerts, renders the Teams cards to PNG
and replays the real exported logs in tests/fixtures. Stops the devstack on exit.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.card_render import chromium, render_card
from devstack.stack import REAL_EXPORTS, REPO, Devstack
from monitors import schema

STATE = REPO / ".devstack" / "demo"
CARDS = STATE / "cards"
# The real exports step 7 replays, and the table names replay expects them under.
REAL_EXPORT_FILES = {"azureActivity_adele.csv": "AzureActivity.csv", "sign-in_adelete.csv": "SigninLogs.csv"}


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n== {title} " + "=" * max(0, 72 - len(title)))


def missing_files() -> list[str]:
    """What the demo reads from the repository and cannot find, each with how to get it back."""
    needed = [schema.TABLES_JSON, *(REAL_EXPORTS / name for name in REAL_EXPORT_FILES)]
    return [
        f"{path.relative_to(REPO)} is missing; it ships with the repository: "
        f"restore it with `git checkout -- {path.relative_to(REPO)}`"
        for path in needed
        if not path.is_file()
    ]


def main() -> int:
    if missing := missing_files():
        for message in missing:
            print(f"error: {message}", file=sys.stderr)
        return 2
    shutil.rmtree(STATE, ignore_errors=True)
    logs = STATE / "logs"
    step("1. A synthetic tenant")
    manifest = generate_tenant(logs)
    rows = {p.stem: sum(1 for _ in p.open()) for p in sorted(logs.glob("*.jsonl"))}
    say(f"Generated {sum(rows.values()):,} log rows for {len(manifest['principals'])} principals: {rows}")
    say("Break-glass accounts: " + ", ".join(a["user_principal_name"] for a in manifest["break_glass"]))

    step("2. The devstack (the cloud, on 127.0.0.1)")
    with Devstack(state_dir=STATE, data_dir=logs) as stack:
        say(f"Log Analytics query API  {stack.log_analytics.url}  (duckdb-kql over the rows above)")
        say(f"Table Storage (Azurite)  {stack.azurite.table_endpoint}  (HTTPS, OAuth tokens only)")
        say(f"Managed identity         {stack.identity.url}")
        say(f"Teams Workflows webhook  {stack.teams.url}/webhook/oncall")
        break_glass = ",".join(a["object_id"] for a in manifest["break_glass"])
        os.environ.update(stack.app_settings(BREAK_GLASS_ACCOUNTS=break_glass))
        function_app = importlib.import_module("function_app")  # as the host loads it
        (timer,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "monitor_tick"]
        run_timer = timer.get_user_function()

        step("3. Tick 1: the timer function runs")
        first = run_tick(run_timer)
        show_tick(first)

        step("4. A late row: a break-glass sign-in from 6 hours ago, ingested only now")
        late_sign_in(stack, manifest)
        second = run_tick(run_timer)
        show_tick(second)

        step("5. Tick 3: nothing new, nothing repeated")
        show_tick(run_tick(run_timer))

        step("6. What on-call received in Teams")
        messages = stack.teams.messages()
        say(f"The Teams sink accepted {len(messages)} messages and rejected {len(stack.teams.rejected())}.")
        show_cards(messages)

    step("7. Offline replay of real exported logs (tests/fixtures)")
    replay_fixtures()
    say("\nDone. The devstack is stopped; its state stays in .devstack/demo for a look.")
    return 0


def generate_tenant(out: Path) -> dict[str, Any]:
    # The generator writes rows over [start, start + 1 day): end it now, so nothing lies in the future.
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    subprocess.run(
        [sys.executable, "-m", "devstack.tenant", "--out", str(out), "--users", "40", "--days", "1",
         "--seed", "7", "--start", start.isoformat()],
        check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads((out / "tenant.json").read_text())


def run_tick(run_timer: Any) -> dict[str, Any]:
    """Call the timer function as the Functions host would, and read back its summary line."""
    from azure.functions.timer import TimerRequest

    summaries = _Summaries()
    logger = logging.getLogger("monitors.tick")
    logger.addHandler(summaries)
    logger.setLevel(logging.INFO)
    try:
        run_timer(TimerRequest(past_due=False))
    finally:
        logger.removeHandler(summaries)
    return json.loads(summaries.lines[-1])


class _Summaries(logging.Handler):
    """Collects the tick's one-line JSON summary, the same line App Insights would receive."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def show_tick(summary: dict[str, Any]) -> None:
    say(
        f"rows returned by Log Analytics: {summary['rows']} (skipped as malformed: {summary['skipped_rows']})"
    )
    say(
        f"findings {summary['findings']}, alerts stored {summary['alerts_stored']}, "
        f"delivered to Teams {summary['delivered']}, query errors {len(summary['query_errors'])}"
    )
    from monitors.bootstrap import services_from_environment
    from monitors.detections import DETECTIONS
    from monitors.history_store import HistoryStore

    history = HistoryStore(services_from_environment().store)
    per_detection: Counter[str] = Counter()
    for alert_id in summary["new_alerts"]:
        found = history.get(alert_id)
        if found:
            f = found[1].finding
            per_detection[f.detection] += 1
            say(f"  [{f.severity.value:8}] {f.detection:22} {f.principal.label}  ({len(f.event_ids)} events)")
    if per_detection:
        say("alerts per detection: " + ", ".join(f"{d.id} {per_detection[d.id]}" for d in DETECTIONS))


def late_sign_in(stack: Devstack, manifest: dict[str, Any]) -> None:
    from monitors.bootstrap import services_from_environment
    from monitors.watermark import read

    account = manifest["break_glass"][0]
    mark = read(services_from_environment().store, stack.workspace_id, "break-glass-use")
    generated = datetime.now(UTC) - timedelta(hours=6)
    # Ingested just after the last tick's window closed: a TimeGenerated window would miss it.
    ingested = mark.ingested_up_to + timedelta(milliseconds=500)
    stack.log_analytics.ingest(
        "SigninLogs",
        [{
            "TimeGenerated": generated.isoformat(), "Id": f"late-{int(time.time())}",
            "UserId": account["object_id"], "UserPrincipalName": account["user_principal_name"],
            "AppDisplayName": "Azure Portal", "IPAddress": "198.51.100.23", "ResultType": "0",
            "AuthenticationDetails": json.dumps([{"authenticationMethod": m, "succeeded": True}
                                                 for m in ("Password", "Text message")]),
            "LocationDetails": {"city": "Reykjavik", "countryOrRegion": "IS"},
            "_IngestionTime": ingested.isoformat(),
        }],
    )  # fmt: skip
    say(f"Ingested a sign-in generated at {generated:%H:%M} UTC for {account['user_principal_name']}")
    time.sleep(1.0)  # the next tick's window must close after the row's ingestion time


def show_cards(messages: list[dict[str, Any]]) -> None:
    if not messages:
        return
    if chromium() is None:
        say("Chromium is not installed, so no PNGs: `make install-browser` adds it.")
        return
    CARDS.mkdir(parents=True, exist_ok=True)
    for number, message in enumerate(messages, start=1):
        card = message["card"]
        (CARDS / f"card-{number}.json").write_text(json.dumps(card, indent=2))
        png = render_card(card, CARDS / f"card-{number}.png")
        title = next((b.get("text", "") for b in card.get("body", []) if b.get("type") == "TextBlock"), "")
        say(f"  {png.relative_to(REPO)}  {title}")
    say("Open them to see what the channel shows (Adaptive Cards JS renderer, headless Chromium);")
    say("the card JSON as posted sits beside each PNG.")


def replay_fixtures() -> None:
    logdir = STATE / "replay"
    logdir.mkdir(parents=True, exist_ok=True)
    for name, table_file in REAL_EXPORT_FILES.items():
        shutil.copy(REAL_EXPORTS / name, logdir / table_file)
    say(f"$ python -m monitors replay {logdir.relative_to(REPO)}")
    subprocess.run([sys.executable, "-m", "monitors", "replay", str(logdir)], check=True, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
