"""The repository is all a user gets: nothing it runs may read a file beside it.

Two halves. The first reads every tracked file for a path that climbs out of the repository (the
sibling `shared` folder the project was written next to, or a `parents[N]` / `REPO.parent` that
goes above the top). The second copies the tracked files into an empty folder, as a clone would
be, and runs replay there; then takes the schema or the real exports away and checks that replay,
the devstack and the demo each stop with exit 2 and a message naming the file and the fix.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SIBLING = "shared"
# The folder the project was first written beside, however a path reaches for it.
REACHES_SIBLING = re.compile(r"""\.\./shared\b|\.parent\s*/\s*["']shared["']|\]\s*/\s*["']shared["']""")
PARENTS_INDEX = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
ABOVE_TOP = re.compile(r"\b(?:REPO|REPO_ROOT|ROOT)\.parent\b")
SCHEMA = Path("monitors/schema/tables.json")
REAL_EXPORTS = Path("tests/fixtures/sentinel-training-lab")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [Path(name) for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return (REPO / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):  # binary, or deleted and not yet committed
        return None


def escapes(path: Path, text: str) -> list[str]:
    """Each line of `text` that reaches outside the repository, as 'path:line: text'."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        # For tools/x.py (two parts), parents[1] is the top of the repository and parents[2] is above it.
        climbs_out = any(int(k) >= len(path.parts) for k in PARENTS_INDEX.findall(line))
        if climbs_out or REACHES_SIBLING.search(line) or ABOVE_TOP.search(line):
            found.append(f"{path}:{number}: {line.strip()}")
    return found


def test_no_tracked_file_reads_outside_the_repository() -> None:
    this_file = Path(__file__).relative_to(REPO)  # its examples below are the ways out
    found = [
        hit
        for path in tracked_files()
        if path != this_file and (text := text_of(path))
        for hit in escapes(path, text)
    ]
    assert not found, "paths that leave the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("where", "line"),
    [
        (Path("tests/unit/test_x.py"), f'FIXTURES = REPO.parent / "{SIBLING}" / "fixtures"'),
        (Path("tools/x.py"), "SCHEMA = Path(__file__).resolve().parents[2] / 'schemas'"),
        (Path("Makefile"), f"\tcp ../{SIBLING}/schemas/tables.json ."),
        (Path("tests/unit/test_x.py"), 'SCHEMA = Path(__file__).parents[3] / "schemas"'),
    ],
)
def test_the_check_catches_each_way_out(where: Path, line: str) -> None:
    assert escapes(where, f"ok = 1\n{line}\n") == [f"{where}:2: {line.strip()}"]


def test_the_check_lets_paths_inside_the_repository_through() -> None:
    inside = 'REPO = Path(__file__).resolve().parents[2]\nrows = "../etc/passwd"  # a traversal to refuse\n'
    assert escapes(Path("tests/unit/test_x.py"), inside) == []


# --- a copy of the tracked files, with nothing beside it


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The tracked files (as they are in the working tree) in an empty folder: what a clone holds."""
    root = tmp_path / "app"
    for path in tracked_files():
        if (REPO / path).is_file():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, root / path)
    return root


def run(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=clone, capture_output=True, text=True, timeout=300, check=False
    )


def test_replay_runs_on_the_real_exports_in_a_clone(clone: Path, tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    shutil.copy(clone / REAL_EXPORTS / "azureActivity_adele.csv", logdir / "AzureActivity.csv")
    result = run(clone, "-m", "monitors", "replay", str(logdir))
    assert result.returncode == 0, result.stderr
    assert "user-arm-write" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "monitors", "replay", str(REAL_EXPORTS)],
        ["-m", "devstack", "up", "--state-dir", ".devstack-test"],
        ["-m", "devstack.demo"],
    ],
    ids=["replay", "devstack", "demo"],
)
def test_without_the_schema_each_entry_point_exits_2_naming_it(clone: Path, command: list[str]) -> None:
    (clone / SCHEMA).unlink()
    result = run(clone, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert str(SCHEMA) in result.stderr
    assert "git checkout" in result.stderr


def test_without_the_real_exports_the_demo_exits_2_naming_them(clone: Path) -> None:
    shutil.rmtree(clone / REAL_EXPORTS)
    result = run(clone, "-m", "devstack.demo")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert str(REAL_EXPORTS / "azureActivity_adele.csv") in result.stderr
    assert str(REAL_EXPORTS / "sign-in_adelete.csv") in result.stderr
