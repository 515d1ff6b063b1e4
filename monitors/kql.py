"""The only place that turns values into KQL text.

Queries live in `.kql` files that open with `declare query_parameters(Name:type, ...);` so the
Kusto language service can check them as they are. At run time that declaration is replaced by
`let Name = <literal>;` lines built here from typed, validated values: nothing else ever
splices text into a query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

_DECLARE = re.compile(r"^\s*declare\s+query_parameters\s*\((?P<params>[^)]*)\)\s*;", re.IGNORECASE)
_PARAM = re.compile(r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<type>[a-z]+)\s*$")
# KQL documents only \\ \" \t \n as escapes, so values are limited to printable ASCII: every
# value we query by (GUIDs, UPNs, ids) fits, and nothing else can change how a literal ends.
_PRINTABLE_ASCII = re.compile(r"[ -~]*")


class KqlError(ValueError):
    """A value that cannot be turned into a KQL literal of the declared type."""


def string(value: str) -> str:
    """A double-quoted KQL string literal with every special character escaped."""
    if not isinstance(value, str):
        raise KqlError(f"expected a string, got {type(value).__name__}")
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise KqlError("only printable ASCII characters may be used in a query value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def timestamp(value: datetime) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise KqlError("expected a timezone-aware datetime")
    utc = value.astimezone(UTC)
    return f"datetime({utc.strftime('%Y-%m-%dT%H:%M:%S.%f')}Z)"


def string_list(values: Iterable[str]) -> str:
    return "dynamic([" + ", ".join(string(v) for v in values) + "])"


def long(value: int) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise KqlError("expected an int")
    return f"long({value})"


_LITERALS = {"datetime": timestamp, "string": string, "long": long}


def literal(kql_type: str, value: object) -> str:
    if kql_type == "dynamic":
        if not isinstance(value, (list, tuple, frozenset, set)):
            raise KqlError("a dynamic parameter must be a list of strings")
        return string_list(sorted(value))
    try:
        return _LITERALS[kql_type](value)  # type: ignore[operator]
    except KeyError:
        raise KqlError(f"unsupported parameter type {kql_type!r}") from None


def parameters(template: str) -> dict[str, str]:
    """The declared parameters of a query template: name -> KQL type."""
    match = _DECLARE.match(template)
    if not match:
        return {}
    declared = {}
    for item in match["params"].split(","):
        param = _PARAM.match(item)
        if not param:
            raise KqlError(f"cannot read query parameter declaration {item.strip()!r}")
        declared[param["name"]] = param["type"]
    return declared


def render(template: str, values: Mapping[str, object]) -> str:
    """Replace the template's parameter declaration with typed `let` statements."""
    declared = parameters(template)
    if set(declared) != set(values):
        raise KqlError(f"query declares {sorted(declared)} but was given {sorted(values)}")
    lets = "".join(
        f"let {name} = {literal(kql_type, values[name])};\n" for name, kql_type in declared.items()
    )
    return lets + body(template)


def body(template: str) -> str:
    """The query without its parameter declaration: what follows the `let` statements of `render`."""
    return _DECLARE.sub("", template, count=1).lstrip("\n")


@cache
def load(path: Path) -> str:
    return path.read_text(encoding="utf-8")
