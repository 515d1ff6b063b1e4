"""How entities are grouped into entity-group transactions (Table Storage's rules: one partition,
at most 100 entities, at most 4 MiB per request)."""

from __future__ import annotations

import json

from monitors.adapters.table_store import BATCH_BYTES, BATCH_LIMIT, transactions


def test_one_partition_and_at_most_a_hundred_entities_per_transaction() -> None:
    entities = [{"PartitionKey": f"p{i % 3}", "RowKey": str(i), "etag": "x"} for i in range(450)]
    chunks = list(transactions(entities))
    assert [len(c) for c in chunks] == [100, 50, 100, 50, 100, 50]
    for chunk in chunks:
        assert len({e["PartitionKey"] for e in chunk}) == 1
        assert all("etag" not in e for e in chunk)  # the store's bookkeeping is never sent
    sent = [e["RowKey"] for chunk in chunks for e in chunk]
    assert sorted(sent, key=int) == [str(i) for i in range(450)]  # each once, none lost


def test_large_entities_split_a_partition_by_size() -> None:
    payload = "x" * 60_000  # an alert's packed payload can be this large (two 30,000-character parts)
    entities = [{"PartitionKey": "alert", "RowKey": str(i), "Payload0": payload} for i in range(100)]
    chunks = list(transactions(entities))
    assert len(chunks) > 1
    for chunk in chunks:
        assert sum(len(json.dumps(e).encode()) for e in chunk) <= BATCH_BYTES
        assert len(chunk) <= BATCH_LIMIT
    assert sum(len(c) for c in chunks) == 100


def test_nothing_to_write_is_no_transaction() -> None:
    assert list(transactions([])) == []
