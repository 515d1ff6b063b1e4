"""Small shared pieces: paths, process rusage, JSON-lines child protocol, statistics."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
PYTHON = sys.executable
DEFAULT_WORK = Path(tempfile.gettempdir()) / "mfamon-bench"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of every Python child: the repo (monitors, devstack, function_app) and tools/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AZURE_", "IDENTITY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TOOLS)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class Usage:
    """What the kernel accounted to one finished child (wait4): CPU seconds and peak RSS."""

    wall_s: float
    user_s: float
    system_s: float
    max_rss_mb: float
    returncode: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s


def wait_usage(proc: subprocess.Popen[Any], started: float, timeout_s: float | None = None) -> Usage:
    """Reap `proc` with wait4, which (unlike RUSAGE_CHILDREN) gives this one child's own rusage."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere (Popen.poll): no rusage left to read
            nan = float("nan")
            return Usage(time.perf_counter() - started, nan, nan, nan, proc.returncode or 0)
        if pid:
            break
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        wall_s=time.perf_counter() - started,
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        returncode=proc.returncode,
    )


def poll_usage(proc: subprocess.Popen[Any], started: float) -> Usage | None:
    """The child's Usage if it has ended (reaping it with wait4), else None. Use instead of poll()."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if not pid:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        wall_s=time.perf_counter() - started,
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
    )


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)


def proc_rss_mb(pid: int | str = "self") -> float:
    """Current resident set of a process (VmRSS), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def proc_hwm_mb(pid: int | str = "self") -> float:
    """Peak resident set of a live process so far (VmHWM), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def self_max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- a child that speaks one JSON object per line on stdin/stdout


class LineChild:
    """A Python child process driven by JSON lines (requests on stdin, answers on stdout)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        stderr_path: Path,
        cwd: Path = REPO,
    ) -> None:
        self.stderr_file = stderr_path.open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [PYTHON, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=dict(env),
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self.stderr_path = stderr_path

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            tail = self.stderr_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"child {self.proc.args} closed its output:\n{tail}")
        return json.loads(line)

    def call(self, **request: Any) -> dict[str, Any]:
        send(self.proc.stdin, request)
        answer = self.read()
        if "error" in answer:
            raise RuntimeError(f"child refused {request.get('op')}: {answer['error']}")
        return answer

    def close(self, timeout_s: float = 30) -> Usage:
        try:
            if self.proc.poll() is None and self.proc.stdin:
                send(self.proc.stdin, {"op": "quit"})
                self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        usage = wait_usage(self.proc, self.started, timeout_s)
        self.stderr_file.close()
        return usage


def send(stream: IO[str] | None, message: Mapping[str, Any]) -> None:
    assert stream is not None
    stream.write(json.dumps(message, default=str) + "\n")
    stream.flush()


# --- statistics


def median(values: Iterable[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def spread(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    clean = [v for v in values if v is not None]
    return (min(clean), max(clean)) if clean else (None, None)


# --- the machine


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    avail = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) / 2**20
    except OSError:
        pass
    node = "unknown"
    with contextlib.suppress(OSError):
        node = subprocess.run(
            ["node", "--version"],  # noqa: S607 - whatever node the devstack's Azurite runs on
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_gb, 1),
        "memory_available_gb_at_start": round(avail, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "duckdb": _version("duckdb"),
        "duckdb_kql": _version("duckdb_kql"),
        "azure_monitor_query": _version("azure-monitor-query"),
        "azure_data_tables": _version("azure-data-tables"),
    }


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def say(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)
