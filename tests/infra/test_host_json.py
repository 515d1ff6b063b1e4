"""host.json against the published host.json schema (schemas/host.schema.json, SchemaStore;
provenance in schemas/SOURCES.md). The Functions host ignores or refuses what it does not
know at start-up, in Azure; this finds it here. The seeded mistakes show it is caught."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from .bicep_ast import REPO

SCHEMA = json.loads((REPO / "tests" / "infra" / "schemas" / "host.schema.json").read_text())


def host() -> dict[str, Any]:
    return json.loads((REPO / "host.json").read_text())


def messages(document: dict[str, Any]) -> list[str]:
    """Every error, down to the innermost branch of a oneOf (the schema has one per host version)."""

    def leaves(error: jsonschema.ValidationError) -> Iterator[str]:
        if not error.context:
            yield f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for inner in error.context:
            yield from leaves(inner)

    validator = jsonschema.Draft7Validator(SCHEMA)
    return [m for error in validator.iter_errors(document) for m in leaves(error)]


def test_host_json_is_valid() -> None:
    assert messages(host()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda h: h.update(functionTimout="00:05:00"), "'functionTimout' was unexpected"),
        (lambda h: h.update(functionTimeout="00:90:00"), "functionTimeout: '00:90:00' does not match"),
        (lambda h: h["extensionBundle"].update(versions="[4.*, 5.0.0)"), "'versions' was unexpected"),
        (
            lambda h: h["logging"]["logLevel"].update(default="Loud"),
            "logging.logLevel.default: 'Loud' is not one of",
        ),
    ],
    ids=["misspelt-setting", "bad-timeout", "unknown-bundle-key", "bad-log-level"],
)
def test_a_seeded_mistake_is_caught(change: Any, expected: str) -> None:
    document = host()
    change(document)
    found = messages(document)
    assert any(expected in m for m in found), found
