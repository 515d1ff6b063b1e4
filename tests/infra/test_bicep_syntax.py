"""Every .bicep file in infra/ must parse: no Bicep CLI can run offline, so tree-sitter-bicep
is the syntax gate (checkov silently skips files it cannot parse; tools/checkov.sh also fails
on that). pycep-parser must parse them too: the structure tests and checkov depend on it."""

from __future__ import annotations

import pathlib

import pytest
import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

from .bicep_ast import INFRA, bicep_files

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_errors(source: bytes) -> list[str]:
    """Positions of ERROR and MISSING nodes, as 'line:col: text'."""
    tree = PARSER.parse(source)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            line, col = node.start_point
            snippet = source[node.start_byte : node.end_byte][:60].decode(errors="replace")
            kind = "missing " + node.type if node.is_missing else "unexpected"
            found.append(f"{line + 1}:{col + 1}: {kind} {snippet!r}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(found)


def test_infra_has_bicep_files() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert {"main.bicep", "tenant/main.bicep", "modules/rbac.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_tree_sitter_parses_without_errors(path: pathlib.Path) -> None:
    errors = syntax_errors(path.read_bytes())
    assert not errors, f"{path.relative_to(INFRA)}:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_pycep_parses(path: pathlib.Path) -> None:
    BicepParser().parse(text=path.read_text())


@pytest.mark.parametrize(
    "broken",
    [
        "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",  # unclosed
        "param p string = \n",  # missing value
        "var x = [for i in range(0, 3) {}]\n",  # missing ':'
    ],
)
def test_syntax_gate_catches_broken_bicep(broken: str) -> None:
    # Guards the gate itself: a grammar that accepted anything would make the test above vacuous.
    assert syntax_errors(broken.encode())
