"""requirements.txt pins every runtime package exactly, so each remote build installs the same
set; requirements.in holds the ranges those pins were chosen from."""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .bicep_ast import REPO


def requirement_lines(name: str) -> list[Requirement]:
    lines = (REPO / name).read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def pins() -> dict[str, str]:
    found = {}
    for requirement in requirement_lines("requirements.txt"):
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"not an exact pin: {requirement}"
        assert specifiers[0].operator == "==", f"not an exact pin: {requirement}"
        assert not requirement.marker, f"a pin that depends on the platform: {requirement}"
        found[canonicalize_name(requirement.name)] = specifiers[0].version
    return found


def closure(roots: list[str]) -> set[str]:
    """The distributions `roots` pull in on this interpreter (Linux, Python 3.11, as deployed)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_every_runtime_requirement_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in requirement_lines("requirements.in"):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is in requirements.in but not pinned in requirements.txt"
        pin = pinned[name]
        assert requirement.specifier.contains(pin), f"{name}=={pin} is outside {requirement}"


def test_the_pins_are_exactly_what_the_runtime_pulls_in() -> None:
    # A missing pin lets the remote build pick any version of it; an extra one ships unused code.
    roots = [r.name for r in requirement_lines("requirements.in")]
    assert set(pins()) == closure(roots)


def test_the_development_environment_runs_the_pinned_versions() -> None:
    # make install installs requirements.txt: the tests exercise what is deployed.
    installed = {name: importlib.metadata.version(name) for name in pins()}
    assert installed == pins()
