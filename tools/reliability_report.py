"""Write RELIABILITY.md from the figures the reliability suite collected.

    python tools/reliability_report.py [RESULTS_JSON] [OUT_MD]

RESULTS_JSON defaults to artifacts/reliability/results.json (written by tests/reliability when
the session ends), OUT_MD to RELIABILITY.md at the repository root.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "artifacts" / "reliability" / "results.json"
DEFAULT_OUT = REPO / "RELIABILITY.md"
GROUPS = ("Control", "Log Analytics", "Table Storage", "Teams", "Process killed", "Time", "Scale")

METHOD = """\
## How it is measured

Every scenario runs real ticks (`monitors.bootstrap.tick`, the production wiring and SDK clients)
against the devstack on 127.0.0.1, on a simulated 5-minute schedule, and injects its fault
through the devstack or a wrapper around a real adapter, never by editing production code:
the query API's `/admin/faults` (429 with Retry-After, 500, 503, 504 after a wait, a dropped
connection, partial results, a rejected query) and its row limit; `devstack/faulty_proxy.py` in
front of Azurite (5xx, stalls, resets, answers lost after the write) and a persistent Azurite
restarted mid-tick; the Teams sink's faults (429, 413, 5xx, slow, down, 202-but-never-shown);
SIGKILL of a child process at each step of a tick; the `now` given to the tick (host clock).

- **expected**: what must be in the history exactly once: each break-glass event (an alert
  covers its event ids) and each user account doing ARM writes (alerted once per account, ever).
- **stored**: expected items covered by an alert in the history. **dup history**: items covered
  by more than one alert, plus alerts covering nothing expected.
- **delivered**: history alerts whose card the Teams sink accepted (matched by alert id).
  **Teams dup**: messages beyond the first per alert (delivery is at least once).
- **lost**: expected items missing from the history plus alerts never accepted by Teams.
  Messages the flow answered 202 but never showed are counted apart (no sender can see them).
- **late missed**: expected rows ingested an hour or more after they happened (or dated in the
  future) that never alerted.
- **max delay**: from a row's ingestion time to the tick that got Teams' 2xx for its alert
  (simulated time; includes the 2-minute visibility lag and the 5-minute schedule).
- **ticks to alert (bound)**: the most ticks any expected alert took, from the first tick that
  could read its row (ingestion time plus the visibility lag) to the one whose post Teams
  accepted, both counted. The bound is 3 ticks, plus the ticks a fault lasts beyond its first
  (the scenario's note says why). A scenario fails past its bound.
"""

LIMITS = """\
## Limits by design (not counted as losses)

- A flow that answers 202 and then fails shows nothing, and no sender can tell. The history
  records such a message as `delivered`, which means *accepted by the flow*: watch the flow's
  run history in Power Automate (or alert on its failed runs) as well.
- Rows generated more than `LATE_ARRIVAL_HOURS` (48 h by default, up to 336) before their
  ingestion are outside the TimeGenerated bound and never read.
- Rows dated more than a day in the future are outside the query's timespan
  (`monitors/pipeline.py` FUTURE_SKEW).
- A row must be queryable within `VISIBILITY_LAG` (2 min) of the ingestion time it is stamped
  with; the window of each tick ends that long before `now`.
- A result that is still partial (or cut at the row limit) for a one-second window fails the
  detection for that tick; the watermark stays and the next tick tries again.
"""


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _text(value: str, limit: int = 220) -> str:
    """One line of Markdown-safe text: error messages carry newlines and pipes."""
    line = " ".join(str(value).split())
    line = line if len(line) <= limit else line[: limit - 1] + "…"
    return line.replace("|", "\\|")


def _delay(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _ticks_to_alert(s: dict[str, Any]) -> str:
    ticks = s.get("max_ticks_to_alert")
    return f"{'–' if ticks is None else ticks} (≤ {s.get('bound_ticks', '?')})"


def _bound_why(s: dict[str, Any]) -> str:
    return f"Bound {s['bound_ticks']} ticks: {s['bound_why']}." if s.get("bound_why") else ""


def _ticks(s: dict[str, Any]) -> str:
    return f"{s['ticks']} ({s['tick_errors']} failed)" if s["tick_errors"] else str(s["ticks"])


def _status(s: dict[str, Any]) -> str:
    return {"pass": "pass", "known bug": "**known bug**"}.get(s["status"], "**FAILED**")


def _row(s: dict[str, Any]) -> str:
    cells = [
        s["scenario"], str(s["faults"]), str(s["rows"]), _ticks(s), str(s["expected"]), str(s["stored"]),
        str(s["history_alerts"]), str(s["delivered"]), str(s["history_duplicates"]),
        str(s["teams_messages"]), str(s["teams_duplicates"]), str(s["lost"]),
        f"{s['late_rows_missed']}/{s['late_rows']}" if s["late_rows"] else "–",
        _delay(s["max_delay_s"]), _ticks_to_alert(s), _status(s),
    ]  # fmt: skip
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


HEADER = (
    "| scenario | faults | rows | ticks | expected | stored | history alerts | delivered | dup history "
    "| Teams msgs | Teams dup | lost | late missed | max delay | ticks to alert (bound) | status |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def _sum(rows: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key] or 0) for r in rows)


def render(data: dict[str, Any]) -> str:
    scenarios: list[dict[str, Any]] = data["scenarios"]
    passing = [s for s in scenarios if s["status"] == "pass"]
    bugs = [s for s in scenarios if s["status"] == "known bug"]
    failed = [s for s in scenarios if s["status"] not in ("pass", "known bug")]
    fuzz = data.get("fuzz") or {}
    rows_fuzzed = fuzz.get("rows") if isinstance(fuzz, dict) else None
    slowest = max(
        (s for s in passing if s["max_delay_s"] is not None), key=lambda s: s["max_delay_s"], default=None
    )

    def goal(key: str, subset: list[dict[str, Any]]) -> str:
        total = _sum(subset, key)
        return f"{total} {'✅' if total == 0 else '❌'}"

    out = [
        "# Reliability",
        "",
        f"Generated by `make reliability` ({data['generated_at']}; {data.get('run', 'full')} run; suite "
        f"{data['suite_seconds']:.0f} s; pytest exit status {data['exit_status']}) from "
        "`tests/reliability/`. Regenerate, never edit by hand.",
        "",
        "## Summary",
        "",
        f"- Scenarios run: **{len(scenarios)}**: {len(passing)} passed, **{len(failed)} failed**"
        + (f" ({', '.join(s['scenario'] for s in failed)})" if failed else "")
        + f", {len(bugs)} pin a known bug (see below)",
        f"- Faults injected: **{_sum(scenarios, 'faults')}**",
        f"- Log rows ingested: **{_sum(scenarios, 'rows'):,}**; rows fuzzed: "
        + (
            f"**{rows_fuzzed:,}** by Hypothesis ({fuzz.get('skipped', 0):,} skipped as malformed, none "
            "crashed a parser or made an invalid card; tests/unit/test_fuzz_rows.py)"
            if rows_fuzzed is not None
            else "not measured in this run (tests/unit fuzzing)"
        ),
        f"- Ticks: **{_sum(scenarios, 'ticks')}**, of which {_sum(scenarios, 'tick_errors')} ended in an "
        "error (the next tick recovered)",
        "",
        "| | expected | stored | delivered (alerts) | dup history | Teams dup | lost | late rows missed "
        "| accepted, never shown |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for label, subset in (("passing scenarios", passing), ("failed scenarios", failed), ("known bugs", bugs)):
        if not subset:
            continue
        out.append(
            f"| {label} | {_sum(subset, 'expected'):,} | {_sum(subset, 'stored'):,} "
            f"| {_sum(subset, 'delivered'):,} of {_sum(subset, 'history_alerts'):,} "
            f"| {_sum(subset, 'history_duplicates')} | {_sum(subset, 'teams_duplicates')} "
            f"| {_sum(subset, 'lost')} | {_sum(subset, 'late_rows_missed')} "
            f"| {_sum(subset, 'accepted_not_shown')} |"
        )
    out += [
        "",
        f"Goals over the passing scenarios: lost = {goal('lost', passing)}, "
        f"duplicated in history = {goal('history_duplicates', passing)}, "
        f"missed late rows = {goal('late_rows_missed', passing)}.",
    ]
    if slowest is not None:
        out.append(
            f"Longest delay to delivery: **{_delay(slowest['max_delay_s'])}** ({slowest['scenario']})."
        )
    out.append("")

    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in scenarios:
        by_group[s["group"]].append(s)
    out += ["## Scenarios", ""]
    for group in [*GROUPS, *sorted(set(by_group) - set(GROUPS))]:
        if group not in by_group:
            continue
        out += [f"### {group}", "", HEADER, *(_row(s) for s in by_group[group]), ""]
        notes = [
            f"- {s['scenario']}: {_text(' '.join(filter(None, [_bound_why(s), s['notes']])))}"
            for s in by_group[group]
            if (s["notes"] or s.get("bound_why")) and s["status"] != "known bug"
        ]
        if notes:
            out += [*notes, ""]

    crashes = by_group.get("Process killed", [])
    if crashes:
        out += [
            "## Teams duplicates per crash point",
            "",
            "| killed | Teams duplicates | lost | dup history |",
            "|---|--:|--:|--:|",
            *(
                f"| {s['scenario'].removeprefix('SIGKILL ')} | {s['teams_duplicates']} | {s['lost']} "
                f"| {s['history_duplicates']} |"
                for s in crashes
            ),
            "",
            "A message Teams accepted just before the process died is posted again by the next tick: the "
            "window runs from the post to the outbox write that records it (the history's delivery record "
            "sits inside it today).",
            "",
        ]
    if bugs:
        out += ["## Known bugs (pinned by strict xfail tests)", ""]
        for s in bugs:
            measured = f" Measured: {_text(s['notes'])}." if s["notes"] else ""
            out.append(
                f"- **{s['scenario']}** (`{s['test']}`): {_text(s.get('known_bug') or '', 400)}.{measured}"
            )
        out.append("")
    out += [METHOD, LIMITS]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    results = Path(argv[1]) if len(argv) > 1 else DEFAULT_RESULTS
    target = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    if not results.exists():
        print(f"{results}: no figures; run the reliability suite first (make reliability)", file=sys.stderr)
        return 2
    target.write_text(render(load(results)), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
