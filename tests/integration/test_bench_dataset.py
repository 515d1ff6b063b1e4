"""`make bench` on a machine that has no cached tenant: generating and preparing one.

The benchmark caches its tenants, so a run on a machine that already had them never exercised
this path; a fresh clone did, and failed before measuring anything. This runs it the way the
benchmark does (a child `python -m bench.dataset`), at a small scale.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def dataset():
    sys.path.insert(0, str(TOOLS))
    try:
        from bench import dataset

        yield dataset
    finally:
        sys.path.remove(str(TOOLS))


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_a_tenant_is_generated_and_prepared_from_nothing(dataset, tmp_path):
    prepared, summary = dataset.ensure(tmp_path, dataset.Scale("tiny", 5_000))

    source = Path(summary["source"])
    signins = [row for table in dataset.SIGNIN_TABLES for row in _rows(prepared / f"{table}.jsonl")]
    assert summary["signins"] == len(signins) > 0
    assert all(row.keys() <= dataset.SIGNIN_COLUMNS for row in signins)

    generated = _rows(source / f"{dataset.ACTIVITY}.jsonl")
    kept = _rows(prepared / f"{dataset.ACTIVITY}.jsonl")
    assert summary["rows"][dataset.ACTIVITY] == len(kept)
    # Whole operations are kept or dropped: every kept operation has all its generated rows.
    per_operation = Counter(row["CorrelationId"] for row in generated)
    kept_per_operation = Counter(row["CorrelationId"] for row in kept)
    assert all(per_operation[op] == count for op, count in kept_per_operation.items())
    # Every break-glass row is kept, and the rest thinned to about one per 40 sign-ins.
    upns = {account["user_principal_name"].lower() for account in summary["break_glass"]}
    break_glass = [row for row in generated if (row.get("Caller") or "").lower() in upns]
    assert break_glass
    assert all(row in kept for row in break_glass)
    thinned = len(kept) - len(break_glass)
    target = summary["signins"] / dataset.ARM_PER_SIGNINS
    assert target / 2 <= thinned <= target * 2 < len(generated)
    # The ground truth names principals whose rows were kept.
    principals = json.loads((source / "tenant.json").read_text())["principals"]
    # AzureActivity's Caller is a member's UPN, a guest's e-mail (a guest's token has no upn claim)
    caller_of = {
        p["object_id"]: (p.get("mail") or p.get("user_principal_name") or "").lower() for p in principals
    }
    callers = {(row.get("Caller") or "").lower() for row in kept}
    writers = [oid for detection, oid in summary["expected"] if detection == dataset.USER_WRITE]
    assert writers
    assert all(caller_of[oid] in callers or oid in callers for oid in writers)
    signed_in = {row.get("UserId") for row in signins}
    used = [
        a
        for a in summary["break_glass"]
        if a["object_id"] in signed_in or a["user_principal_name"].lower() in callers
    ]
    assert summary["expected_counts"][dataset.BREAK_GLASS] == len(used) > 0
    assert summary["break_glass_events"] > 0


def test_a_prepared_tenant_is_read_from_the_cache(dataset, tmp_path):
    scale = dataset.Scale("tiny", 2_000)
    prepared, first = dataset.ensure(tmp_path, scale)
    stamp = (prepared / "prepared.json").stat().st_mtime_ns

    again, second = dataset.ensure(tmp_path, scale)

    assert (again, second) == (prepared, first)
    assert (prepared / "prepared.json").stat().st_mtime_ns == stamp


def test_a_changed_generator_makes_a_new_tenant(dataset, tmp_path, monkeypatch):
    scale = dataset.Scale("tiny", 2_000)
    before = dataset.tenant_dir(tmp_path, scale), dataset.prepared_dir(tmp_path, scale, False)
    edited = tmp_path / "tenant.py"
    edited.write_bytes(dataset.GENERATOR.read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(dataset, "GENERATOR", edited)

    after = dataset.tenant_dir(tmp_path, scale), dataset.prepared_dir(tmp_path, scale, False)

    for old, new in zip(before, after, strict=True):
        assert new != old
        assert new.parent == old.parent
