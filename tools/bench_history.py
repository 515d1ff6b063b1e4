"""Alert history at scale: N alerts in Azurite, then the history page and API timed over HTTPS.

    .venv/bin/python tools/bench_history.py                  # 100,000 alerts over 365 days
    .venv/bin/python tools/bench_history.py --alerts 20000 --upsert 20000   # all through upsert_many

The alerts are the entities the app stores (`history_store.alert_entities`: the main entity
with its payload plus an index copy per detection and principal, 4 per alert). The first
`--upsert` alerts are written with `upsert_many` in batches of 100 per partition, timed. Azurite
(LokiJS) gets slower with every entity it holds (each batch costs time proportional to the
table: 20,000 alerts took 566 s, 141 entities/s), so 100,000 alerts that way would take hours;
the rest are written into Azurite's own database file while it is stopped, in the exact form
it persisted the upserted ones (checked entity by entity), and Azurite is restarted on it.

Then function_app is served by devstack/functions_host.py and each view is requested as a
browser or API client would. Reported: median and p95 latency and the Table Storage requests
the function made. The request count is what carries over to Azure, where a PartitionKey +
RowKey range is an index seek; Azurite instead filters and sorts the whole table in JavaScript
for every query, so its latency grows with the table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.functions_host import FunctionsHost  # noqa: E402
from devstack.stack import Devstack  # noqa: E402
from monitors import alerts  # noqa: E402
from monitors.adapters.table_store import pack  # noqa: E402
from monitors.history_store import TABLE, alert_entities  # noqa: E402
from monitors.model import EventLine, Finding, Principal, Severity  # noqa: E402

TITLES = {
    "break-glass-use": "Break-glass account used",
    "user-arm-write": "New user account doing ARM writes",
}
STATUS_MIX = (("resolved", 80), ("acknowledged", 8), ("new", 10), ("waived", 2))


def synthetic_alerts(count: int, days: int, now: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """`count` alerts as stored entities, spread over `days` up to `now`; ~2,000 principals."""
    rng = random.Random(seed)  # noqa: S311 (benchmark data, not secrets)
    people = [
        (f"{rng.getrandbits(128):032x}", f"user{n:04d}@contoso.com") for n in range(max(count // 50, 10))
    ]
    statuses = [s for s, weight in STATUS_MIX for _ in range(weight)]
    entities: list[dict[str, Any]] = []
    span = days * 86_400
    for n in range(count):
        created = now - timedelta(seconds=span * (n / count) + rng.random())
        raw_id, upn = people[rng.randrange(len(people))]
        user_id = f"{raw_id[:8]}-{raw_id[8:12]}-4{raw_id[13:16]}-8{raw_id[17:20]}-{raw_id[20:32]}"
        breakglass = rng.random() < 0.2
        detection = "break-glass-use" if breakglass else "user-arm-write"
        severity = Severity.CRITICAL if breakglass else rng.choice([Severity.HIGH, Severity.MEDIUM])
        # Shaped like the real detections: user-arm-write lists no event lines (its facts summarize
        # the writes), break-glass-use lists each sign-in. Payloads stay realistic and small, which
        # also keeps Azurite's database file under V8's 512 MB string limit at 100,000 alerts.
        events = tuple(
            EventLine(
                event_id=f"ev-{n}-{k}",
                time=created - timedelta(minutes=k),
                source="SigninLogs",
                fields=(
                    ("What", "sign-in"),
                    ("Result", "failure 50126" if k else "success"),
                    ("App", "Azure Portal"),
                    ("IP", f"203.0.113.{k}"),
                    ("Location", "Oslo, NO"),
                ),
                flagged=k > 0,
            )
            for k in range(rng.randint(1, 3) if breakglass else 0)
        )
        ids = tuple(e.event_id for e in events) or tuple(f"ev-{n}-{k}" for k in range(rng.randint(1, 5)))
        facts = (("Account", upn), ("Object id", user_id), ("Events", str(len(ids))))
        if not breakglass:
            facts += (
                ("Operation names", "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE"),
                ("Tools", "Azure CLI (also Terraform, Bicep, scripts)"),
                ("MFA", "no MFA claim"),
            )
        finding = Finding(
            detection=detection,
            severity=severity,
            principal=Principal(user_id=user_id, user_principal_name=upn),
            headline=f"{TITLES[detection]}: {upn}",
            facts=facts,
            events=events,
            event_ids=ids,
            first_time=created - timedelta(minutes=len(ids)),
            last_time=created,
        )
        (alert,) = alerts.make_alerts([finding], created)
        status = statuses[rng.randrange(len(statuses))]
        payload = pack(alerts.to_json(alert))
        for entity in alert_entities(alert, status=status, delivery="delivered", payload=payload):
            if status in ("acknowledged", "resolved"):
                entity["StatusHistory"] = json.dumps(
                    [{"at": created.isoformat(), "by": "oncall", "from": "new", "to": status, "note": "seen"}]
                )
            entities.append(entity)
    return entities


def fill(store: Any, entities: list[dict[str, Any]]) -> int:
    """upsert_many per partition (Azurite allows one batch transaction at a time); returns transactions."""
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for entity in entities:
        by_partition.setdefault(entity["PartitionKey"], []).append(entity)
    return sum(store.upsert_many(TABLE, rows) for rows in by_partition.values())


def azurite_doc(entity: dict[str, Any], stamp: str) -> dict[str, Any]:
    """An entity as Azurite (LokiJS) persists it, typed the way azure-data-tables sends it."""
    properties: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, datetime):
            properties[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            properties[f"{name}@odata.type"] = "Edm.DateTime"
        elif isinstance(value, float):
            properties[name], properties[f"{name}@odata.type"] = value, "Edm.Double"
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
            properties[name], properties[f"{name}@odata.type"] = str(value), "Edm.Int64"
        else:
            properties[name] = value
    properties["Timestamp"], properties["Timestamp@odata.type"] = stamp, "Edm.DateTime"
    return {
        "PartitionKey": entity["PartitionKey"],
        "RowKey": entity["RowKey"],
        "properties": properties,
        "lastModifiedTime": stamp,
        "eTag": f"W/\"datetime'{stamp.replace(':', '%3A')}'\"",
    }


def seed_database(
    location: Path, table: str, entities: list[dict[str, Any]], upserted: list[dict[str, Any]]
) -> None:
    """Append `entities` to Azurite's persisted table, after checking the form against `upserted`."""
    path = location / "__azurite_db_table__.json"
    db = json.loads(path.read_text())
    (collection,) = [c for c in db["collections"] if c["name"].endswith(f"${table}")]
    stored = {(d["PartitionKey"], d["RowKey"]): d for d in collection["data"]}
    for entity in upserted[:200]:
        doc = stored[(entity["PartitionKey"], entity["RowKey"])]
        mine = azurite_doc(entity, doc["lastModifiedTime"])
        if mine["properties"] != doc["properties"]:
            raise SystemExit(f"Azurite stores entities differently than assumed: {mine} != {doc}")
    now_ms = int(time.time() * 1000)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    next_id = collection["maxId"]
    for entity in entities:
        next_id += 1
        doc = azurite_doc(entity, stamp)
        doc["meta"], doc["$loki"] = {"revision": 0, "created": now_ms, "version": 0}, next_id
        collection["data"].append(doc)
    collection["maxId"] = next_id
    collection["idIndex"] = None
    data = collection["data"]
    for name, index in collection["binaryIndices"].items():  # positions in `data`, sorted by the value
        index["dirty"], index["values"] = False, sorted(range(len(data)), key=lambda i: data[i][name])
    text = json.dumps(db, separators=(",", ":"))  # as LokiJS writes it; V8 reads it as one string
    path.write_text(text)
    print(f"Azurite database file: {len(text) / 2**20:,.0f} MiB")


def timed(session: Any, url: str, headers: dict[str, str], store: Any, repeat: int) -> dict[str, Any]:
    times, requests_made, status = [], [], 0
    for _ in range(repeat + 1):  # the first request warms caches (templates, secret, clients)
        before = store.transactions
        started = time.perf_counter()
        response = session.get(url, headers=headers)
        times.append(time.perf_counter() - started)
        requests_made.append(store.transactions - before)
        status = response.status_code
    times, requests_made = times[1:], requests_made[1:]
    ordered = sorted(times)
    return {
        "status": status,
        "median_ms": round(statistics.median(times) * 1000),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000),
        "table_requests": max(requests_made),
        "bytes": len(response.content),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365, help="the alerts are spread over this many days")
    parser.add_argument("--upsert", type=int, default=5_000, help="alerts written with upsert_many (timed)")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per view")
    args = parser.parse_args()

    import requests

    from devstack.azurite import Azurite
    from monitors.bootstrap import services_from_environment

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-history-") as scratch, Devstack(Path(scratch)) as stack:
        location = Path(scratch) / "azurite"
        port = stack.azurite.port
        stack.azurite.stop()  # the same Azurite, persisted on disk this time
        stack.azurite = Azurite(stack.certs, port=port, location=location).start()
        os.environ.update(stack.app_settings(STATE_TABLE_PREFIX="bench"))
        started = time.perf_counter()
        entities = synthetic_alerts(args.alerts, args.days, now)
        print(
            f"generated {args.alerts:,} alerts ({len(entities):,} entities) "
            f"in {time.perf_counter() - started:.1f} s"
        )

        per_alert = len(entities) / args.alerts
        cut = round(min(args.upsert, args.alerts) * per_alert)
        upserted, rest = (
            entities[-cut:] if cut else [],
            entities[: len(entities) - cut],
        )  # the oldest go first
        started = time.perf_counter()
        transactions = fill(services_from_environment().store, upserted)
        fill_s = time.perf_counter() - started
        print(
            f"upsert_many: {len(upserted):,} entities in {fill_s:.1f} s "
            f"({transactions:,} batch transactions, {len(upserted) / max(fill_s, 1e-9):,.0f} entities/s)"
        )
        if rest:
            stack.azurite.stop()  # Azurite writes its database file on exit
            started = time.perf_counter()
            seed_database(location, f"bench{TABLE}", rest, upserted)
            stack.azurite = Azurite(stack.certs, port=port, location=location).start(timeout_s=600)
            print(
                f"seeded {len(rest):,} more entities into Azurite's database and restarted it in "
                f"{time.perf_counter() - started:.1f} s"
            )

        function_app = importlib.import_module("function_app")
        store = function_app._services().store  # the function's own client: count its requests
        with FunctionsHost(function_app.app, Path(scratch)) as host:
            session = requests.Session()
            session.verify = str(stack.certs.ca)
            html = {"Accept": "text/html"}
            api = {"Accept": "application/json", "x-functions-key": host.key}
            first = session.get(host.url_for("alerts?limit=50", with_key=True), headers=api).json()
            assert len(first["alerts"]) == 50, first
            deep = first["alerts"][-1]["alert_id"]
            for _ in range(40):  # page 42: row-key paging costs the same at any depth
                deep = session.get(host.url_for(f"alerts?after={deep}"), headers=api).json()["next"]
            some_upn = first["alerts"][0]["principal"]
            month_ago = (now - timedelta(days=30)).date().isoformat()
            week_ago = (now - timedelta(days=7)).date().isoformat()
            newest = first["alerts"][0]["alert_id"]
            views = {
                "history page (HTML, chart, waivers)": (host.url_for("alerts", with_key=True), html),
                "JSON API, default": (host.url_for("alerts"), api),
                "JSON API, page 42 (after=...)": (host.url_for(f"alerts?after={deep}"), api),
                "detection=break-glass-use": (host.url_for("alerts?detection=break-glass-use"), api),
                "principal=<upn>": (host.url_for(f"alerts?principal={some_upn}"), api),
                "since 30 days until 7 days ago": (
                    host.url_for(f"alerts?since={month_ago}&until={week_ago}"),
                    api,
                ),
                "status=new": (host.url_for("alerts?status=new"), api),
                "status=waived (2 %)": (host.url_for("alerts?status=waived"), api),
                "alert page (HTML)": (host.url_for(f"alerts/{newest}", with_key=True), html),
            }
            print(f"\n{'view':40} {'status':>6} {'median':>9} {'p95':>9} {'table requests':>15} {'bytes':>8}")
            for name, (url, headers) in views.items():
                result = timed(session, url, headers, store, args.requests)
                print(
                    f"{name:40} {result['status']:>6} {result['median_ms']:>6} ms {result['p95_ms']:>6} ms "
                    f"{result['table_requests']:>15} {result['bytes']:>8}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
