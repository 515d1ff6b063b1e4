"""AlertState.known_principals: the same answer as a point read per principal, for fewer transactions."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from monitors.adapters.table_store import key
from monitors.state import BASELINE, BASELINE_PAGE, BASELINE_POINT_READS, AlertState
from tests.unit.test_web import MemoryStore

DETECTION = "user-arm-write"


class CountingStore(MemoryStore):
    """Counts what Table Storage would bill: point reads, and query pages of `page_size` entities."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.pages = 0

    def get(self, table: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        self.gets += 1
        return super().get(table, partition_key, row_key)

    def query(
        self,
        table: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        self.pages += 1
        for read, entity in enumerate(
            super().query(table, query_filter, parameters, select=select, page_size=page_size), start=1
        ):
            if page_size and read > 1 and (read - 1) % page_size == 0:
                self.pages += 1
            yield entity


def _state(known: Sequence[str], other_detection: Sequence[str] = ()) -> tuple[AlertState, CountingStore]:
    store = CountingStore()
    for principal in known:
        store.replace(BASELINE, {"PartitionKey": DETECTION, "RowKey": key(principal)}, None)
    for principal in other_detection:
        store.replace(BASELINE, {"PartitionKey": "other", "RowKey": key(principal)}, None)
    return AlertState(store), store


def _principals(n: int, rng: random.Random) -> list[str]:
    shapes = (
        lambda i: f"{rng.getrandbits(128):032x}-{i}",
        lambda i: f"user{i}@contoso.com",
        lambda i: f"guest{i}_fabrikam.com#EXT#@contoso.onmicrosoft.com",  # '#' is quoted in keys
        lambda i: f"émile{i}@contoso.com",
    )
    return [shapes[i % len(shapes)](i) for i in range(n)]


def test_a_few_principals_are_point_reads() -> None:
    state, store = _state(["a@contoso.com"])
    asked = [f"p{i}@contoso.com" for i in range(BASELINE_POINT_READS - 1)] + ["a@contoso.com"]
    assert state.known_principals(DETECTION, asked) == {"a@contoso.com"}
    assert (store.gets, store.pages) == (BASELINE_POINT_READS, 0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("baseline", "asked"), [(0, 40), (50, 11), (3_000, 400), (30_000, 12), (30_000, 25)])
def test_the_answer_is_the_point_reads_answer(seed: int, baseline: int, asked: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    everyone = _principals(baseline + asked, rng)
    known = rng.sample(everyone, baseline)
    question = rng.sample(everyone, asked) + rng.sample(known, min(len(known), 3))
    state, store = _state(known, other_detection=rng.sample(everyone, min(100, len(everyone))))
    assert state.known_principals(DETECTION, question) == set(known) & set(question)
    # never worse than one point read per distinct principal by more than a factor of two
    assert store.gets + store.pages <= 2 * len(set(question)) + 1


def test_many_principals_in_a_large_baseline_cost_pages_not_reads() -> None:
    rng = random.Random(7)  # noqa: S311 - test data, not security
    everyone = _principals(6_000, rng)
    state, store = _state(everyone[:5_000])
    question = everyone[4_000:]  # 1,000 known, 1,000 new
    assert state.known_principals(DETECTION, question) == set(everyone[4_000:5_000])
    assert store.gets == 0
    assert store.pages <= 5_000 // BASELINE_PAGE + 1
