"""Time to alert: a row's ingestion time until the Teams sink holds its card, timer every minute.

The function runs in its own process and calls the timer function at second 0 of every minute
(NCRONTAB `0 */1 * * * *`, as the devstack settings and the Functions host would). Once its
first tick has run, break-glass sign-ins are ingested one by one at random moments (so their
phase against the schedule is uniform), each stamped with the moment the query API stored it
(`_IngestionTime`, what `ingestion_time()` returns). Each carries its own IP address, which the
card shows, so every card is matched to its row. Latency = the sink's `received_at` minus the
ingestion stamp; both clocks are this machine's.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import LineChild, child_env, median, say, spread
from bench.stack import Stack

ACCOUNTS = (
    ("7f6d3c2a-5b4e-4c1d-9a8b-0e1f2a3b4c5d", "bg-bench1@contoso.onmicrosoft.com"),
    ("2b8e4f1c-9d3a-4e5b-8c7d-6a5b4c3d2e1f", "bg-bench2@contoso.onmicrosoft.com"),
)
FIDO2 = json.dumps([{"authenticationMethod": "FIDO2 security key", "succeeded": True}])
SPACING_S = (20.0, 50.0)  # between injections, uniform: random phase against the minute
WAIT_AFTER_LAST_S = 300.0  # 2 min visibility lag + 1 min schedule + slack


def _row(n: int, account: tuple[str, str]) -> dict[str, Any]:
    return {
        "TimeGenerated": (datetime.now(UTC) - timedelta(seconds=20)).isoformat(),
        "Id": f"tta-{n}-{secrets.token_hex(4)}",
        "UserId": account[0],
        "UserPrincipalName": account[1],
        "AppDisplayName": "Azure Portal",
        "AppId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "IPAddress": f"198.51.100.{101 + n}",  # three digits: no IP is a prefix of another
        "ResultType": "0",
        "AuthenticationDetails": FIDO2,
        "LocationDetails": {"city": "Oslo", "countryOrRegion": "NO"},
    }


def run(stack: Stack, samples: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311 - timing jitter, not security
    stack.engine.call(op="clear")
    stack.teams_clear()
    prefix = f"btta{secrets.token_hex(3)}"
    env = stack.settings(prefix, ",".join(a[0] for a in ACCOUNTS))
    minutes = 3 + (samples * SPACING_S[1] + WAIT_AFTER_LAST_S) / 60
    child = LineChild(
        ["-m", "bench.tick_child", "schedule", "--minutes", f"{minutes:.1f}"],
        env=child_env(env),
        stderr_path=stack.logs / "time-to-alert.log",
    )
    child.read()  # ready: settings loaded, SDK clients built
    ticks: list[dict[str, Any]] = []
    first_tick = threading.Event()

    def follow() -> None:
        while True:
            try:
                line = child.read()
            except (RuntimeError, ValueError):
                return
            if line.get("done"):
                return
            ticks.append(line)
            first_tick.set()

    threading.Thread(target=follow, daemon=True).start()
    say("  waiting for the first scheduled tick ...")
    first_tick.wait(timeout=150)
    injected = []
    for n in range(samples):
        time.sleep(rng.uniform(*SPACING_S))
        account = ACCOUNTS[n % 2]
        row = _row(n, account)
        answer = stack.engine.call(op="ingest_now", table="SigninLogs", rows=[row])
        injected.append({"n": n, "ip": row["IPAddress"], "account": account[1], "ingested_at": answer["at"]})
    deadline = time.monotonic() + WAIT_AFTER_LAST_S
    latencies: dict[int, float] = {}
    while time.monotonic() < deadline and len(latencies) < samples:
        time.sleep(5)
        latencies = _match(stack.teams_messages(), injected)
    child.proc.terminate()
    child.close(timeout_s=30)
    for item in injected:
        item["latency_s"] = latencies.get(item["n"])
        picked = [t for t in ticks if t["tick_started"] >= _plus(item["ingested_at"], 120)]
        item["tick_started"] = picked[0]["tick_started"] if picked else None
    values = list(latencies.values())
    low, high = spread(values)
    result = {
        "samples": injected,
        "received": len(values),
        "median_s": median(values),
        "min_s": low,
        "max_s": high,
        "ticks": ticks,
        "tick_wall_s_median": median(
            (
                datetime.fromisoformat(t["tick_finished"]) - datetime.fromisoformat(t["tick_started"])
            ).total_seconds()
            for t in ticks
        ),
    }
    if values:
        say(
            f"  {len(values)}/{samples} cards; time to alert median {result['median_s']:.1f} s "
            f"(min {low:.1f}, max {high:.1f})"
        )
    return result


def _plus(iso: str, seconds: float) -> str:
    return (datetime.fromisoformat(iso) + timedelta(seconds=seconds)).isoformat()


def _match(messages: list[dict[str, Any]], injected: list[dict[str, Any]]) -> dict[int, float]:
    found: dict[int, float] = {}
    for message in messages:
        text = json.dumps(message.get("cards") or message.get("card"))
        received = datetime.fromisoformat(message["received_at"].replace("Z", "+00:00"))
        for item in injected:
            if item["n"] in found:
                continue
            if item["ip"] in text:
                found[item["n"]] = (received - datetime.fromisoformat(item["ingested_at"])).total_seconds()
    return found
