"""The log tables' documented columns and KQL types: `tables.json` beside this file.

SOURCES.md, beside it too, says where the columns come from. The exports reader (replay) and
the devstack's query engine both read the file, so a column one of them knows the other knows.
"""

from __future__ import annotations

import json
from pathlib import Path

TABLES_JSON = Path(__file__).with_name("tables.json")
KQL_TYPES = frozenset({"string", "datetime", "bool", "int", "long", "real", "dynamic"})


class SchemaMissing(Exception):
    """The schema file is not where the product reads it: the message names it and the fix."""


def load(path: Path = TABLES_JSON) -> dict[str, dict[str, str]]:
    """tables.json -> {table: {column: kql type}}, in the documented column order."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaMissing(
            f"the table schema {path} is missing; it ships with the repository "
            f"(monitors/schema/tables.json): restore it with `git checkout -- monitors/schema`"
        ) from None
    schema: dict[str, dict[str, str]] = {}
    for table, columns in raw.items():
        if table.startswith("_"):
            continue  # "_about" and other notes
        schema[table] = {}
        for name, kql_type in columns:
            if kql_type not in KQL_TYPES:
                raise ValueError(f"{path}: {table}.{name} has type {kql_type!r}; known: {sorted(KQL_TYPES)}")
            schema[table][name] = kql_type
    return schema
