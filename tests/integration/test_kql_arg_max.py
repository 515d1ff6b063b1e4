"""The devstack's `summarize arg_max(T, *) by Key` (devstack/kql_arg_max.py) against duckdb-kql's
own rendering, on DuckDB: the same rows and columns, nulls and all, and within a memory limit
that duckdb-kql's rendering exceeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import duckdb_kql
import pytest
from duckdb_kql import translate

from devstack import kql_arg_max

kql_arg_max.install()  # as devstack.loganalytics does

ROWS = [
    # Key, T, V: the value at the largest T, even a null one; null T only when a group has no other
    ("a", 1, "x"),
    ("a", 3, None),
    ("a", 2, "y"),
    ("b", None, "ignored"),
    ("b", 5, "m"),
    ("c", None, "only"),
    (None, 1, "k1"),
    (None, 2, "k2"),
    ("D", 7, "upper"),
    ("d", 4, "lower"),
]


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb_kql.connect(":memory:")
    con.execute('CREATE TABLE Events ("Key" VARCHAR, "T" BIGINT, "V" VARCHAR, "W" VARCHAR)')
    con.executemany("INSERT INTO Events VALUES (?, ?, ?, ?)", [(*row, f"w-{row[2]}") for row in ROWS])
    yield con
    con.close()


SCHEMA = {"Events": ["Key", "T", "V", "W"]}


def answer(
    con: duckdb.DuckDBPyConnection, kql: str, *, schema: dict = SCHEMA, upstream: bool = False
) -> tuple[list, list]:
    """Column names and rows (sorted) of `kql`, rendered by the rewrite or by duckdb-kql's own."""
    render = kql_arg_max._UPSTREAM if upstream else kql_arg_max._render_summarize
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(translate, "render_summarize", render)
        sql = str(duckdb_kql.to_sql(kql, schema=schema))
        result = con.execute(sql)
        names = [column[0] for column in result.description]
        return names, sorted(result.fetchall(), key=repr)


@pytest.mark.parametrize(
    "kql",
    [
        "Events | summarize arg_max(T, *) by Key",
        "Events | summarize arg_min(T, *) by Key",
        "Events | summarize Latest = arg_max(T, V) by Key",
        "Events | summarize arg_max(T, *) by Lower = tolower(Key)",
        "Events | summarize arg_max(T, *) by Key, W",
        "Events | extend T2 = T * 2 | summarize arg_max(T2, V, W) by Key",
    ],
)
def test_the_rewrite_answers_as_duckdb_kql_does(con: duckdb.DuckDBPyConnection, kql: str) -> None:
    names, rows = answer(con, kql)
    assert "QUALIFY" in str(duckdb_kql.to_sql(kql, schema=SCHEMA))
    assert (names, rows) == answer(con, kql, upstream=True)


def test_nulls_in_the_answer_are_kusto_s(con: duckdb.DuckDBPyConnection) -> None:
    names, rows = answer(con, "Events | summarize arg_max(T, *) by Key")
    assert names == ["Key", "T", "V", "W"]
    assert rows == sorted(
        [
            ("a", 3, None, "w-None"),  # the value at the largest T, null as it is
            ("b", 5, "m", "w-m"),  # a null T is not the largest
            ("c", None, "only", "w-only"),  # a group of null T still answers a row
            (None, 2, "k2", "w-k2"),  # null keys are one group
            ("D", 7, "upper", "w-upper"),
            ("d", 4, "lower", "w-lower"),
        ],
        key=repr,
    )


@pytest.mark.parametrize(
    "kql",
    [
        "Events | summarize arg_max(T, *), Rows = count() by Key",  # more than the one aggregate
        "Events | summarize arg_max(T, *)",  # no key
        "Events | summarize Rows = count() by Key",
    ],
)
def test_other_summarizes_are_duckdb_kql_s_own(con: duckdb.DuckDBPyConnection, kql: str) -> None:
    sql = str(duckdb_kql.to_sql(kql, schema=SCHEMA))
    assert "QUALIFY" not in sql
    assert answer(con, kql) == answer(con, kql, upstream=True)


def test_a_dedupe_over_more_events_than_memory_holds_spills(tmp_path: Path) -> None:
    # 240,000 events of 200,000 keys, twelve ~200-character columns carried through the dedupe and
    # read after it (else DuckDB would not carry them), in 32 MB: duckdb-kql's aggregate per
    # column runs out of memory there; the window spills its sort.
    keys, rows, width = 200_000, 240_000, 200
    columns = [f"C{n}" for n in range(12)]
    con = duckdb_kql.connect(
        ":memory:", config={"memory_limit": "32MB", "threads": 1, "temp_directory": str(tmp_path)}
    )
    values = ", ".join(f"repeat('x', {width}) || i AS \"{column}\"" for column in columns)
    key_column = f"printf('event-%08d', i % {keys}) AS \"Key\""
    sql = f'CREATE TABLE Events AS SELECT {key_column}, i AS "T", {values} FROM range({rows}) AS r(i)'  # noqa: S608
    con.execute(sql)
    kql = (
        f"Events | summarize arg_max(T, *) by Key | extend Chars = strlen(strcat({', '.join(columns)}))"
        " | summarize Events = count(), Latest = sum(T), Chars = sum(Chars)"
    )
    schema = {"Events": ["Key", "T", *columns]}
    latest = [key + keys if key + keys < rows else key for key in range(keys)]
    chars = sum(len(columns) * (width + len(str(t))) for t in latest)
    assert answer(con, kql, schema=schema)[1] == [(keys, sum(latest), chars)]
    with pytest.raises(duckdb.OutOfMemoryException):
        answer(con, kql, schema=schema, upstream=True)


def test_install_refuses_a_duckdb_kql_it_was_not_written_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(translate, "render_summarize", kql_arg_max._UPSTREAM)
    monkeypatch.setattr(kql_arg_max, "version", lambda _: "9.9.9")
    with pytest.raises(RuntimeError, match=r"duckdb-kql 9\.9\.9 is installed; devstack/kql_arg_max\.py"):
        kql_arg_max.install()
