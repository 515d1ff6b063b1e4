"""Small helpers over pycep-parser's JSON AST of the templates in infra/.

pycep represents an identifier and a string literal the same way (a plain str), operators as
{"operator": {"type", "operands"}} and calls as {"function": {"type", "parameters"}}. A loop or
a condition wraps a resource body as {"loop_type"/"condition", "config": body}. These helpers
hide that so the tests read as statements about the infrastructure.
"""

from __future__ import annotations

import functools
import pathlib
import re
from collections.abc import Iterator
from typing import Any

from pycep import BicepParser

REPO = pathlib.Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

# Built-in role definition ids (the same in every Azure cloud), by role name.
ROLE_IDS = {
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
ROLE_NAMES = {v: k for k, v in ROLE_IDS.items()}

# Broad roles that must never appear anywhere in infra/.
FORBIDDEN_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
}


def bicep_files() -> list[pathlib.Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def template(relative: str) -> dict[str, Any]:
    """Parsed template, e.g. template("modules/storage.bicep")."""
    return BicepParser().parse(text=(INFRA / relative).read_text())


def text(relative: str) -> str:
    return (INFRA / relative).read_text()


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource/module body, unwrapped from loops and conditions."""
    config = resource["config"]
    while (
        isinstance(config, dict) and ("loop_type" in config or "condition" in config) and "config" in config
    ):
        config = config["config"]
    return config


def resources_of_type(relative: str, type_: str) -> dict[str, dict[str, Any]]:
    return {
        name: res
        for name, res in template(relative).get("resources", {}).items()
        if res["type"].lower() == type_.lower()
    }


def only(mapping: dict[str, Any]) -> Any:
    assert len(mapping) == 1, f"expected exactly one, got {sorted(mapping)}"
    return next(iter(mapping.values()))


def get(obj: Any, path: str) -> Any:
    """get(body, "properties.siteConfig.minTlsVersion")"""
    for part in path.split("."):
        assert isinstance(obj, dict), f"{path!r}: {part!r} is not under an object"
        assert part in obj, f"missing {part!r} in {path!r}"
        obj = obj[part]
    return obj


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def accessor_chain(node: Any) -> list[Any]:
    """`a.b.c` / `a[i].b` as ["a", "b", "c"] / ["a", ("index", "i"), "b"]."""
    if isinstance(node, str):
        return [node]
    op = node.get("operator", {}) if isinstance(node, dict) else {}
    if op.get("type") == "property_accessor":
        return accessor_chain(op["operands"]["operand_1"]) + accessor_chain(op["operands"]["operand_2"])
    if op.get("type") == "index_accessor":
        return [*accessor_chain(op["operands"]["operand_1"]), ("index", op["operands"]["operand_2"])]
    raise AssertionError(f"not an accessor chain: {node!r}")


def resolve_variable(relative: str, node: Any) -> Any:
    """Follow `var.x.y` through the template's variables (one level of objects)."""
    chain = accessor_chain(node)
    variables = template(relative).get("variables", {})
    assert chain[0] in variables, f"{chain[0]!r} is not a variable of {relative}"
    value = variables[chain[0]]["value"]
    for part in chain[1:]:
        value = value[part]
    return value


def decorator_types(param: dict[str, Any]) -> set[str]:
    return {d["type"] for d in param.get("decorators", [])}


def secure_params(relative: str) -> set[str]:
    return {n for n, p in template(relative).get("parameters", {}).items() if "secure" in decorator_types(p)}


def referenced_names(relative: str) -> set[str]:
    """Every plain identifier/string leaf anywhere in the template (coarse, for 'is X used')."""
    return {leaf for leaf in walk(template(relative)) if isinstance(leaf, str)}


_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def interpolated(value: str) -> list[str]:
    """Expressions inside '${...}' of a Bicep string."""
    return _INTERPOLATION.findall(value)
