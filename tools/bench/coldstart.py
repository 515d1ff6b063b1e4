"""Cold start: `import function_app` in fresh interpreters, and a fresh worker's first HTTP answer."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

from bench.common import PYTHON, REPO, child_env, median, say, spread
from bench.stack import Stack

_IMPORTTIME = re.compile(
    r"import time:\s+(?P<self>\d+) \|\s+(?P<cumulative>\d+) \|(?P<indent>\s+)(?P<name>\S+)"
)


def _run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our interpreter
        [PYTHON, *args], env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=300
    )
    return time.perf_counter() - began, done


def import_time(env: dict[str, str], runs: int) -> dict[str, Any]:
    """-X importtime's cumulative figure for function_app, plus wall clock of whole processes."""
    cumulative, top, wall, bare = [], {}, [], []
    for _ in range(runs):
        seconds, done = _run(["-c", "pass"], env)
        bare.append(seconds)
        seconds, done = _run(["-X", "importtime", "-c", "import function_app"], env)
        wall.append(seconds)
        if done.returncode != 0:
            raise RuntimeError(f"import function_app failed: {done.stderr[-2000:]}")
        rows = [m.groupdict() for m in map(_IMPORTTIME.match, done.stderr.splitlines()) if m]
        for row in rows:
            if row["name"] == "function_app":
                cumulative.append(int(row["cumulative"]) / 1e6)
        # function_app's direct imports (one level below it; a parent is listed after its children)
        below: dict[str, float] = {}
        for row in rows:
            level = (len(row["indent"]) - 1) // 2
            if level == 1:
                below[row["name"]] = int(row["cumulative"]) / 1e6
            elif level == 0:
                if row["name"] == "function_app":
                    top = below
                below = {}
    biggest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:6])
    low, high = spread(cumulative)
    return {
        "runs": runs,
        "importtime_cumulative_s": median(cumulative),
        "importtime_min_s": low,
        "importtime_max_s": high,
        "process_wall_s": median(wall),
        "bare_interpreter_wall_s": median(bare),
        "biggest_imports_s": biggest,
    }


def first_response(env: dict[str, str], runs: int, route: str, accept: str) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        seconds, done = _run(["-m", "bench.coldstart_child", route, accept], env)
        if done.returncode != 0:
            raise RuntimeError(f"coldstart child failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_wall_s"] = seconds
        samples.append(result)
    last = samples[-1]
    first = last["calls"][0] if last["calls"] else {}
    return {
        "runs": runs,
        "route": route,
        "accept": accept,
        "routes": last["routes"],
        "content_type": first.get("content_type"),
        "status": first.get("status"),
        "bytes": first.get("bytes"),
        "import_s": median(s["import_s"] for s in samples),
        "first_call_s": median(s["calls"][0]["seconds"] for s in samples if s["calls"]),
        "second_call_s": median(s["calls"][1]["seconds"] for s in samples if len(s["calls"]) > 1),
        "first_response_after_start_s": median(s["first_response_after_start_s"] for s in samples),
        "process_wall_s": median(s["process_wall_s"] for s in samples),
    }


def run(stack: Stack, prefix: str, runs: int) -> dict[str, Any]:
    env = child_env(stack.settings(prefix))
    imports = import_time(env, runs)
    say(f"  import function_app: {imports['importtime_cumulative_s']:.3f} s cumulative (-X importtime)")
    pages = {
        "alerts as a browser (Accept: text/html)": first_response(env, runs, "alerts", "text/html"),
        "alerts as an API client (Accept: application/json)": first_response(
            env, runs, "alerts", "application/json"
        ),
    }
    for name, page in pages.items():
        say(
            f"  GET /api/alerts {name}: {page['status']} {page['content_type']}, first response "
            f"{page['first_call_s']:.3f} s after import, second {page['second_call_s']:.3f} s"
        )
    html = next((p for p in pages.values() if (p.get("content_type") or "").startswith("text/html")), None)
    return {
        "import": imports,
        "pages": pages,
        "history_html": html is not None,
        "routes": next(iter(pages.values()))["routes"],
    }
