"""Extract the resource types infra/ uses from Azure/bicep-types-az into one small JSON file.

The repository publishes every ARM resource type as bicep-types JSON (generated/<area>/<provider>/
<apiVersion>/types.json, several MB together). tests/infra/test_azure_types.py needs only the
types infra/ declares: this keeps each one with every type it references, renumbered, without
descriptions.

    git clone https://github.com/Azure/bicep-types-az /tmp/bicep-types-az
    python tools/extract_azure_types.py /tmp/bicep-types-az <commit>

writes tests/infra/azure-types/types.json; record the commit in tests/infra/azure-types/SOURCES.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "tests" / "infra" / "azure-types" / "types.json"
# 'Microsoft.Web/sites@2024-04-01' as Bicep declares a resource type (modules from the public
# registry are not checked here: they are published already compiled and validated).
DECLARED = re.compile(r"'([A-Za-z]+\.[A-Za-z]+/[A-Za-z/]+)@(\d{4}-\d{2}-\d{2}(?:-preview)?)'")


def declared_types() -> set[tuple[str, str]]:
    found = set()
    for path in sorted((REPO / "infra").rglob("*.bicep")):
        found |= set(DECLARED.findall(path.read_text()))
    return found


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), *args]
    # git from PATH, on the checkout the person running this named
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603 - see above


def refs(node: Any) -> list[int]:
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return [int(node["$ref"].removeprefix("#/"))]
        return [i for value in node.values() for i in refs(value)]
    if isinstance(node, list):
        return [i for value in node for i in refs(value)]
    return []


def renumber(node: Any, index: dict[int, int]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return {"$ref": f"#/{index[int(node['$ref'].removeprefix('#/'))]}"}
        # Descriptions are text (a property named "description" maps to its definition, kept).
        return {
            k: renumber(v, index) for k, v in node.items() if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [renumber(v, index) for v in node]
    return node


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a clone (or bare mirror) of Azure/bicep-types-az")
    parser.add_argument("commit", help="the commit to read")
    args = parser.parse_args()
    files = git(args.checkout, "ls-tree", "-r", "--name-only", args.commit, "generated/").splitlines()
    out_types: list[Any] = []
    resources: dict[str, int] = {}
    sources: dict[str, str] = {}
    for provider_type, version in sorted(declared_types()):
        namespace = provider_type.split("/")[0].lower()
        wanted = f"{provider_type}@{version}".lower()
        candidates = [f for f in files if f.lower().endswith(f"/{namespace}/{version}/types.json")]
        for path in candidates:
            types = json.loads(git(args.checkout, "show", f"{args.commit}:{path}"))
            hits = [
                i for i, t in enumerate(types) if t["$type"] == "ResourceType" and t["name"].lower() == wanted
            ]
            if hits:
                break
        else:
            print(f"{provider_type}@{version}: no such resource type at {args.commit}", file=sys.stderr)
            return 1
        # The resource type and everything it references, in the order first reached.
        order, todo = [], [hits[0]]
        while todo:
            i = todo.pop(0)
            if i not in order:
                order.append(i)
                todo += refs(types[i])
        index = {old: len(out_types) + n for n, old in enumerate(order)}
        out_types += [renumber(types[i], index) for i in order]
        resources[types[hits[0]]["name"]] = index[hits[0]]
        sources[types[hits[0]]["name"]] = path
    head = json.dumps({"commit": args.commit, "files": sources, "resources": resources}, indent=1)
    # One type per line: a new commit's diff shows which types changed.
    nodes = ",\n".join(json.dumps(t, separators=(",", ":")) for t in out_types)
    OUTPUT.write_text(f'{head[:-2]},\n "types": [\n{nodes}\n]\n}}\n')
    print(f"{OUTPUT.relative_to(REPO)}: {len(resources)} resource types, {len(out_types)} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
