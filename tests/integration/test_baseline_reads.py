"""AlertState.known_principals against Azurite: the range read of the baseline partition relies on
Table Storage returning a partition's entities in row-key order; this is where that is checked."""

from __future__ import annotations

from monitors.adapters.table_store import key
from monitors.bootstrap import services_from_environment
from monitors.state import BASELINE, AlertState

DETECTION = "user-arm-write"


def test_many_principals_are_answered_from_a_few_pages(app_env: dict[str, str]) -> None:
    store = services_from_environment().store
    everyone = [f"{n:04d}-{'guest_x.com#EXT#@t.onmicrosoft.com' if n % 7 == 0 else 'user@contoso.com'}"
                for n in range(3000)]  # fmt: skip
    known = everyone[::2]  # every other one; guests ('#' quoted in the key) among them
    store.upsert_many(
        BASELINE, ({"PartitionKey": DETECTION, "RowKey": key(p), "Principal": p} for p in known)
    )
    store.upsert_many(BASELINE, ({"PartitionKey": "other", "RowKey": key(p)} for p in everyone[1::2]))
    asked = everyone[1000:2400]

    before = store.transactions
    answer = AlertState(store).known_principals(DETECTION, asked)

    assert answer == set(known) & set(asked)
    assert store.transactions - before <= 3  # 700 entities in range: one or two pages, not 1,400 reads
