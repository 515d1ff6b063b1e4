"""Check Bicep resource bodies against Azure's own resource type definitions, offline.

The definitions are the bicep-types JSON Azure publishes (Azure/bicep-types-az, extracted to
azure-types/types.json by tools/extract_azure_types.py): for each `type@apiVersion`, an object
type with its properties, which of them are read-only, and the values an enum allows. The
Bicep compiler checks the same things; it cannot be installed here, so this reads the templates
with pycep (bicep_ast.py) and reports:
- a `type@apiVersion` that Azure does not define,
- a property the type does not have, or one that is read-only,
- a literal string that is not among the values an enum lists (also for extensible enums, about
  which Bicep only warns).
Expressions (parameters, variables, function calls, interpolated strings) are not evaluated:
only what the template spells out literally is checked.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

from .bicep_ast import body

TYPES_FILE = pathlib.Path(__file__).parent / "azure-types" / "types.json"
READ_ONLY = 2  # bicep-types property flag (Required 1, ReadOnly 2, WriteOnly 4, DeployTimeConstant 8)
# Keys of a resource body that are Bicep's, not the resource type's.
BICEP_KEYS = {"parent", "scope", "dependsOn"}
EXPRESSIONS = {"operator", "function", "loop_type", "condition"}


@functools.cache
def definitions() -> dict[str, Any]:
    return json.loads(TYPES_FILE.read_text())


def _node(ref: dict[str, str]) -> dict[str, Any]:
    return definitions()["types"][int(ref["$ref"].removeprefix("#/"))]


def resource_type(type_: str, api_version: str) -> dict[str, Any] | None:
    wanted = f"{type_}@{api_version}".lower()
    for name, index in definitions()["resources"].items():
        if name.lower() == wanted:
            return definitions()["types"][index]
    return None


def problems(parsed: dict[str, Any], where: str) -> list[str]:
    """Every mistake in one parsed template, as '<where> <resource>: ...'."""
    symbols = set(parsed.get("parameters", {})) | set(parsed.get("variables", {}))
    found = []
    for symbol, resource in parsed.get("resources", {}).items():
        declared = f"{resource['type']}@{resource['api_version']}"
        defined = resource_type(resource["type"], resource["api_version"])
        prefix = f"{where} {symbol} ({declared})"
        if defined is None:
            found.append(f"{prefix}: Azure defines no resource type {declared}")
            continue
        if resource.get("existing"):
            continue  # only referenced: its body names it, nothing is deployed
        checker = _Checker(prefix, symbols | {"resourceGroup", "subscription"}, found)
        checker.value(body(resource), _node(defined["body"]), "")
    return found


class _Checker:
    def __init__(self, prefix: str, symbols: set[str], found: list[str]) -> None:
        self.prefix, self.symbols, self.found = prefix, symbols, found

    def fail(self, path: str, message: str) -> None:
        self.found.append(f"{self.prefix} {path or '<body>'}: {message}")

    def value(self, value: Any, type_: dict[str, Any], path: str) -> None:
        kind = type_["$type"]
        if isinstance(value, dict) and "loop_type" in value and kind == "ArrayType":
            # The loop's item and index names are references inside its body.
            self.symbols |= {v for v in value["loop_type"]["detail"].values() if isinstance(v, str)}
            self.value(value["config"], _node(type_["itemType"]), f"{path}[for]")
            return
        if self._is_expression(value):
            return
        if kind in ("ObjectType", "DiscriminatedObjectType") and isinstance(value, dict):
            self.object(value, type_, path)
        elif kind == "ArrayType" and isinstance(value, list):
            for i, item in enumerate(value):
                self.value(item, _node(type_["itemType"]), f"{path}[{i}]")
        elif kind == "UnionType" and isinstance(value, str):
            self.enum(value, [_node(e) for e in type_["elements"]], path)
        elif kind == "StringLiteralType" and isinstance(value, str) and value != type_["value"]:
            self.fail(path, f"{value!r} is not allowed; the only value is {type_['value']!r}")

    def object(self, value: dict[str, Any], type_: dict[str, Any], path: str) -> None:
        properties = dict(type_.get("properties", {}))
        if type_["$type"] == "DiscriminatedObjectType":
            properties = dict(type_["baseProperties"])
            key = type_["discriminator"]
            chosen = value.get(key)
            if isinstance(chosen, str) and not self._is_expression(chosen):
                element = type_["elements"].get(chosen)
                if element is None:
                    allowed = ", ".join(sorted(type_["elements"]))
                    self.fail(f"{path}.{key}".lstrip("."), f"{chosen!r} is not allowed; use one of {allowed}")
                    return
                properties.update(_node(element).get("properties", {}))
            else:
                # Not known before deployment: accept what any of the variants has.
                for element in type_["elements"].values():
                    properties.update(_node(element).get("properties", {}))
        for key, item in value.items():
            at = f"{path}.{key}".lstrip(".")
            if not path and key in BICEP_KEYS:
                continue
            if key in properties:
                prop = properties[key]
                if prop.get("flags", 0) & READ_ONLY:
                    self.fail(at, "is read-only: Azure sets it, a template cannot")
                    continue
                self.value(item, _node(prop["type"]), at)
            elif "additionalProperties" in type_:
                self.value(item, _node(type_["additionalProperties"]), at)
            else:
                self.fail(at, f"is not a property of {type_.get('name') or 'this object'}")

    def enum(self, value: str, elements: list[dict[str, Any]], path: str) -> None:
        # An extensible enum is its listed values plus any string: Bicep warns about a value
        # outside the list, and here it fails (a new value Azure accepts means a new apiVersion).
        allowed = [e["value"] for e in elements if e["$type"] == "StringLiteralType"]
        if not allowed:
            return
        # ARM compares enum values without regard to case.
        if value.lower() not in {a.lower() for a in allowed}:
            self.fail(path, f"{value!r} is not allowed; use one of {', '.join(allowed)}")

    def _is_expression(self, value: Any) -> bool:
        if isinstance(value, dict):
            return bool(EXPRESSIONS & value.keys())
        # pycep writes an identifier and a string literal alike: a name the template declares
        # is a reference; an interpolated string is computed.
        return isinstance(value, str) and (value in self.symbols or "${" in value)
