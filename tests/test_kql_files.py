"""Every .kql file in the repo must pass Microsoft's Kusto language service (tools/kqlcheck.mjs).

The checker parses and analyses each file against the Log Analytics tables in
monitors/schema/tables.json, so an unknown table, column or function, a syntax error or a type
error fails here, before the query ever reaches a workspace. The second half proves the checker
can fail: it runs it over temporary files with one known problem each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitors.schema import TABLES_JSON

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKER = REPO_ROOT / "tools" / "kqlcheck.mjs"
LANGUAGE_SERVICE = REPO_ROOT / "node_modules" / "@kusto" / "language-service-next"
SKIP_DIRS = {"node_modules", ".venv", ".devstack", ".git"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRun:
    returncode: int
    report: dict[str, Any]
    stderr: str

    def diagnostics(self, path: Path) -> list[dict[str, Any]]:
        for entry in self.report["files"]:
            if Path(entry["file"]).resolve() == path.resolve():
                return list(entry["diagnostics"])
        raise AssertionError(f"{path} was not checked; checked: {[f['file'] for f in self.report['files']]}")


@pytest.fixture(scope="module")
def node() -> str:
    node_bin = shutil.which("node")
    if node_bin is None:
        pytest.fail("node is not on PATH: install Node 20+ and run `make install`")
    if not (LANGUAGE_SERVICE / "package.json").is_file():
        pytest.fail(f"{LANGUAGE_SERVICE} is missing: run `make install` (or `npm ci` in {REPO_ROOT})")
    return node_bin


def run_checker(node_bin: str, *paths: Path, schema: Path = TABLES_JSON) -> CheckRun:
    proc = subprocess.run(
        [node_bin, str(CHECKER), "--schema", str(schema), "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode not in (0, 1):
        pytest.fail(f"kqlcheck could not run (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return CheckRun(returncode=proc.returncode, report=json.loads(proc.stdout), stderr=proc.stderr)


def repo_kql_files() -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(REPO_ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        found += [Path(dirpath, f) for f in filenames if f.endswith(".kql")]
    return sorted(found)


def format_offenders(run: CheckRun) -> str:
    lines = []
    for entry in run.report["files"]:
        for d in entry["diagnostics"]:
            lines.append(
                f"{entry['file']}:{d['line']}:{d['col']}: {d['severity']}: {d['message']} [{d['code']}]"
            )
    return "\n".join(lines)


def test_every_repo_kql_file_passes_the_language_service(node: str) -> None:
    run = run_checker(node, REPO_ROOT)
    checked = sorted(Path(f["file"]).resolve() for f in run.report["files"])
    # The checker and this test agree on which files exist (same skip rules); with no .kql files yet,
    # this still proves the checker loads the schema and the language service and walks the repo.
    assert checked == repo_kql_files()
    assert run.report["errors"] == 0, f"{run.report['errors']} KQL error(s):\n{format_offenders(run)}"
    assert run.returncode == 0, run.stderr


VALID_QUERY = """\
declare query_parameters(WatermarkStart:datetime, WatermarkEnd:datetime, EarliestTime:datetime,
    BreakGlassIds:dynamic);
// Status is dynamic in SigninLogs but string in AADNonInteractiveUserSignInLogs: align it before the
// union, or the union splits it into Status_dynamic and Status_string.
union SigninLogs, (AADNonInteractiveUserSignInLogs | extend Status = todynamic(Status))
| where TimeGenerated >= EarliestTime
| where ingestion_time() > WatermarkStart and ingestion_time() <= WatermarkEnd
| where UserId in (BreakGlassIds)
| extend ErrorCode = toint(todynamic(Status).errorCode), Ingested = ingestion_time()
| summarize arg_max(Ingested, *) by Id
| project Id, TimeGenerated, UserPrincipalName, ErrorCode
"""

# name -> (query text, words the error message must contain)
BROKEN_QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "syntax_error": ("SigninLogs\n| where (TimeGenerated > ago(1h)\n| take 5\n", ("Expected",)),
    "unknown_column": ("SigninLogs | where NoSuchColumn == 1\n", ("NoSuchColumn",)),
    "unknown_table": ("NoSuchTable | take 1\n", ("NoSuchTable", "table")),
    "unknown_function": ("SigninLogs | extend x = no_such_function(Id)\n", ("no_such_function", "function")),
    "type_error": ("SigninLogs | where TimeGenerated > 5\n", ("datetime", "long")),
    "undeclared_parameter": ("SigninLogs | where ingestion_time() > WatermarkStart\n", ("WatermarkStart",)),
    "status_type_differs": (
        # Status is a string in this table: member access needs todynamic(Status) first.
        "AADNonInteractiveUserSignInLogs | extend Code = toint(Status.errorCode)\n",
        ("errorCode",),
    ),
}


@pytest.fixture(scope="module")
def sample_run(node: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CheckRun]:
    """One checker run over a directory of samples (Node start-up dominates, so run it once)."""
    root = tmp_path_factory.mktemp("kql")
    (root / "valid.kql").write_text(VALID_QUERY)
    for name, (text, _) in BROKEN_QUERIES.items():
        (root / "broken").mkdir(exist_ok=True)
        (root / "broken" / f"{name}.kql").write_text(text)
    (root / "node_modules").mkdir()
    (root / "node_modules" / "ignored.kql").write_text("this is not KQL")
    return root, run_checker(node, root)


def test_checker_accepts_a_valid_query(sample_run: tuple[Path, CheckRun]) -> None:
    root, run = sample_run
    assert run.diagnostics(root / "valid.kql") == []


@pytest.mark.parametrize("name", sorted(BROKEN_QUERIES))
def test_checker_reports_the_problem(sample_run: tuple[Path, CheckRun], name: str) -> None:
    root, run = sample_run
    _, words = BROKEN_QUERIES[name]
    errors = [d for d in run.diagnostics(root / "broken" / f"{name}.kql") if d["severity"] == "error"]
    assert any(all(w in d["message"] for w in words) for d in errors), f"expected {words} in {errors}"


def test_checker_fails_and_skips_node_modules(sample_run: tuple[Path, CheckRun]) -> None:
    root, run = sample_run
    assert run.returncode == 1
    checked = {Path(f["file"]).resolve() for f in run.report["files"]}
    assert (root / "node_modules" / "ignored.kql").resolve() not in checked
    assert len(checked) == 1 + len(BROKEN_QUERIES)


def test_text_output_is_file_line_col(node: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.kql"
    bad.write_text("SigninLogs\n| where NoSuchColumn == 1\n")
    proc = subprocess.run(
        [node, str(CHECKER), "--schema", str(TABLES_JSON), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{bad}:2:9: error: The name 'NoSuchColumn'"), proc.stdout
