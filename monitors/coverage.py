"""Which detections a set of log exports lets run, and what each one could not see.

Replay runs every detection over whatever exports it is given. An export can lack a table (only
SigninLogs was exported) or a column (exports from before 2021 have no AuthenticationProtocol,
which the password-grant checks read). The query still runs, over empty values, and finds
nothing: without this, "No alerts." would stand for "nothing to find" and "could not look" alike.

A detection's needs are read from its KQL: the documented columns of each table that the query
names, outside comments and string literals. A column and its `_d` twin (Claims and Claims_d,
the same value as text and as dynamic) are one need, met by either. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

_COMMENT = re.compile(r"(^|\s)//[^\n]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_WORD = re.compile(r"\w+")


def named_columns(query: str, schema: Mapping[str, Collection[str]]) -> dict[str, frozenset[str]]:
    """Per table of `schema` that `query` names, the documented columns it names.

    Over-reads rather than under-reads: a word that is both a column and an alias counts as the
    column (a few spare columns cost little; a missing one loses findings).
    """
    # Comments and string literals name no column ("Microsoft.Authorization/..." is not one).
    code = _STRING.sub(" ", _COMMENT.sub(" ", query))
    words = set(_WORD.findall(code))
    return {table: frozenset(words & set(columns)) for table, columns in schema.items() if table in words}


@dataclass(frozen=True, slots=True, kw_only=True)
class Coverage:
    """What one detection could read from the exports."""

    detection: str
    tables: tuple[str, ...]  # the tables its query reads
    absent_tables: tuple[str, ...]  # of those, the ones no export holds
    absent_columns: tuple[tuple[str, tuple[str, ...]], ...]  # (table, columns its export lacks)

    @property
    def ran(self) -> bool:
        """Whether any table it reads was exported: else its query ran over nothing."""
        return len(self.absent_tables) < len(self.tables)

    @property
    def complete(self) -> bool:
        return not self.absent_tables and not self.absent_columns

    def text(self, export_names: Mapping[str, str]) -> str:
        """One line for a person; `export_names` maps a table to its export's file name."""
        if self.complete:
            return "ran"
        reasons = [
            f"{export_names.get(table, table)} has no {', '.join(columns)} "
            f"column{'s' if len(columns) > 1 else ''}"
            for table, columns in self.absent_columns
        ]
        if self.absent_tables:
            reasons.append(f"no export of {', '.join(self.absent_tables)}")
        return f"{'incomplete' if self.ran else 'could not run'}: {'; '.join(reasons)}"


def coverage(
    detection: str, needs: Mapping[str, Collection[str]], exported: Mapping[str, Collection[str]]
) -> Coverage:
    """`needs`: per table, the columns the detection's query names (named_columns).
    `exported`: per exported table, the documented columns its export holds."""
    absent_columns = []
    for table, columns in needs.items():
        if table in exported:
            missing = _unmet(columns, exported[table])
            if missing:
                absent_columns.append((table, missing))
    return Coverage(
        detection=detection,
        tables=tuple(needs),
        absent_tables=tuple(table for table in needs if table not in exported),
        absent_columns=tuple(absent_columns),
    )


def _unmet(needed: Collection[str], held: Collection[str]) -> tuple[str, ...]:
    """The needs `held` does not meet, each named once (a column and its `_d` twin are one)."""
    unmet: dict[str, None] = {}
    for column in sorted(needed):
        base = column.removesuffix("_d")
        if not {column, base, base + "_d"} & set(held):
            unmet[base if base in needed else column] = None
    return tuple(unmet)
