"""`make_set` and `make_list` as Log Analytics answers them, where duckdb-kql 1.1.2 does not.

Three gaps, each of which changes what a detection sees locally:

- **The size cap.** `make_set(x, 20)` returns at most 20 values in Log Analytics; duckdb-kql
  ignores the second argument, so one principal's million rows came back as a million event ids
  (the app's own caps were never exercised) and `make_list(x, N)` likewise.
- **Memory.** duckdb-kql's `make_set` collects every value of a group, each wrapped in a list,
  before it removes duplicates: one principal's million rows held ~1.5 GB in one aggregate,
  which DuckDB cannot spill. Here a capped `make_set` returns the N smallest distinct values
  (`min(DISTINCT v, N)`); Log Analytics returns *some* N distinct values, so any N are
  faithful, and the same N every time. duckdb-kql hands the size over as `CAST(N AS BIGINT)`;
  until that form was recognised, every capped make_set silently took the unbounded path below,
  and user-arm-write's summarize over one principal's 2M event ids peaked at 1,455 MB RSS in a
  1 GB engine (1,104 MB with the heap).
- **Strings that read as arrays.** `make_set` unions dynamic arrays (`[1,2]` and `[2,3]` give
  `[1,2,3]`); duckdb-kql decides "array" by parsing the value as JSON, whatever its type, so a
  *string* column holding `["a"]` failed the whole query ("Conversion Error: Expected ARRAY").
  A log row must not be able to do that: only a dynamic value is an array here.

duckdb-kql has no hook for its aggregates, so `install()` replaces its two table entries, and
refuses to if they are not the 1.1.2 templates this was written against: an upgrade that
changes them must be reviewed here, not overwritten unseen.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from duckdb_kql.translate import functions

# KQL's documented default and maximum for make_set/make_list's size argument.
KQL_MAX_SIZE = 1_048_576
# DuckDB's `min(v, n)` takes n below this; larger caps collect every distinct value first.
_BOUNDED_HEAP_LIMIT = 1_000_000
# How duckdb-kql renders a literal size: `make_set(x, 20)` reaches us as `CAST(20 AS BIGINT)`.
_LITERAL_SIZE = re.compile(r"(?:CAST\((\d+) AS BIGINT\)|(\d+))")

_UPSTREAM_TEMPLATES = {
    "make_set": (
        "to_json(coalesce(list_distinct(flatten(list("
        "CASE WHEN json_type(TRY_CAST({0} AS JSON)) = 'ARRAY' "
        "THEN CAST(to_json({0}) AS JSON[]) ELSE [to_json({0})] END"
        ") FILTER (WHERE {0} IS NOT NULL))), []))"
    ),
    "make_list": "coalesce(list({0}) FILTER (WHERE {0} IS NOT NULL), [])",
}

_IS_ARRAY = "(typeof({0}) = 'JSON' AND json_type(TRY_CAST({0} AS JSON)) = 'ARRAY')"
# Arrays' elements and the other values are gathered apart (arrays are rare: unbounded is fine),
# then merged, deduplicated and cut to the cap; `{collect}` gathers the non-array values.
_MAKE_SET = (
    "to_json(coalesce(list_distinct("
    f"coalesce(flatten(list(CASE WHEN {_IS_ARRAY} THEN CAST(to_json({{0}}) AS JSON[]) END)"
    f" FILTER (WHERE {{0}} IS NOT NULL AND {_IS_ARRAY})), [])"
    f" || coalesce({{collect}} FILTER (WHERE {{0}} IS NOT NULL AND ({_IS_ARRAY}) IS NOT TRUE), [])"
    ")[1:{1}], []))"
)


def _literal_size(rendered: str) -> int | None:
    """The size argument as a number, or None when it is an expression, known only at run time."""
    match = _LITERAL_SIZE.fullmatch(rendered.strip())
    return int(match[1] or match[2]) if match else None


def _make_set(args: list[str]) -> str:
    size = args[1] if len(args) == 2 else str(KQL_MAX_SIZE)
    literal = _literal_size(size)
    bounded = literal is not None and literal < _BOUNDED_HEAP_LIMIT
    collect = "min(DISTINCT to_json({0}), {1})" if bounded else "list(DISTINCT to_json({0}))"
    return _MAKE_SET.replace("{collect}", collect).format(args[0], size)


def _make_list(args: list[str]) -> str:
    whole = _UPSTREAM_TEMPLATES["make_list"].format(args[0])
    return f"({whole})[1:{args[1] if len(args) == 2 else KQL_MAX_SIZE}]"


_RENDERERS = {"make_set": _make_set, "make_list": _make_list}


@dataclasses.dataclass(frozen=True)
class _CappedAggregate(functions.AggregateSpec):
    def render(self, args: list[str]) -> str:
        super().render(args)  # the arity check, with duckdb-kql's own message
        return _RENDERERS[self.name](args)


def install() -> None:
    """Replace duckdb-kql's make_set and make_list; idempotent."""
    for name, upstream in _UPSTREAM_TEMPLATES.items():
        spec: Any = functions.AGGREGATE_FUNCTIONS[name]
        if isinstance(spec, _CappedAggregate):
            continue
        if spec.template != upstream:
            raise RuntimeError(
                f"duckdb-kql's {name} is not the template devstack/kql_aggregates.py replaces; "
                "review that module against the installed version"
            )
        fields = {field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)}
        functions.AGGREGATE_FUNCTIONS[name] = _CappedAggregate(**fields)
