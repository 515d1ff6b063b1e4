"""`summarize arg_max(T, *) by Key` as one row picked per group, not one aggregate per column.

The detections dedupe the Activity Log with `summarize arg_max(TimeGenerated, *) by
EventDataId`. duckdb-kql 1.1.2 renders that as a GROUP BY with an `arg_max` (and an
`any_value` fallback) per returned column: ~20 aggregate states per event, part of which DuckDB
cannot spill. Replay of a 1M-row export spent ~30 s of CPU per deduping query there and grew
~21 MB per 100k events past its memory limit.

A window picks the same row: the one with the largest (smallest, for `arg_min`) non-null T in
its group, any row of the group when all its T are null, nulls in returned columns kept as they
are. Ties are arbitrary in both engines. DuckDB sorts for the window and spills the sort, and
takes the same query at 1M rows in half the CPU (14 s against 31 s, measured on user-arm-write).

Only that shape is rewritten: one `arg_max`/`arg_min`, at least one `by` key, nothing else
aggregated. Everything else is duckdb-kql's own rendering. `install()` refuses to run over a
duckdb-kql other than the 1.1.2 it was written against: a new version's summarize must be
reviewed here first.
"""

from __future__ import annotations

from importlib.metadata import version

from duckdb_kql import translate
from duckdb_kql.translate import ir

SUPPORTED_VERSION = "1.1.2"
_ORDER = {"max": "DESC", "min": "ASC"}


def _render_summarize(op: ir.Summarize, prev: str, cols: list[str] | None = None) -> str:
    upstream = _UPSTREAM(op, prev, cols)  # also refuses what duckdb-kql refuses, with its message
    if len(op.aggregates) != 1 or not op.by:
        return upstream
    key_names, (names,) = translate.summarize_names(op, cols)
    targets = translate.arg_max_targets(op.aggregates[0], key_names, cols)
    if targets is None:
        return upstream
    extreme, maximised, picked = targets
    keys = [translate.render_expr(key.expr) for key in op.by]
    values = [translate.render_expr(value) for value in (maximised, *picked)]
    columns = zip([*keys, *values], [*key_names, *names], strict=True)
    select = ", ".join(f"{sql} AS {translate.quote_ident(name)}" for sql, name in columns)
    window = f"PARTITION BY {', '.join(keys)} ORDER BY {values[0]} {_ORDER[extreme]} NULLS LAST"
    # Every piece is duckdb-kql's own rendering (quoted names, escaped literals), as upstream's.
    return f"SELECT {select} FROM {prev} QUALIFY row_number() OVER ({window}) = 1"  # noqa: S608


_UPSTREAM = translate.render_summarize


def install() -> None:
    """Put the rewrite in front of duckdb-kql's summarize; idempotent."""
    if translate.render_summarize is _render_summarize:
        return
    installed = version("duckdb-kql")
    if installed != SUPPORTED_VERSION:
        raise RuntimeError(
            f"duckdb-kql {installed} is installed; devstack/kql_arg_max.py was written against "
            f"{SUPPORTED_VERSION}: review it against the installed version"
        )
    translate.render_summarize = _render_summarize
