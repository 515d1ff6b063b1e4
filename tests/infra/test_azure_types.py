"""infra/ against Azure's own resource type definitions (azure_types.py): every type@apiVersion
exists, every property exists and is writable, every literal enum value is allowed. The seeded
mistakes below show each kind is caught."""

from __future__ import annotations

import re

import pytest
from pycep import BicepParser

from .azure_types import definitions, problems
from .bicep_ast import INFRA, bicep_files, template, text

TEMPLATES = [str(p.relative_to(INFRA)) for p in bicep_files()]
DECLARED = re.compile(r"'([A-Za-z]+\.[A-Za-z]+/[A-Za-z/]+@\d{4}-\d{2}-\d{2}(?:-preview)?)'")


@pytest.mark.parametrize("relative", TEMPLATES)
def test_the_template_matches_azure_resource_types(relative: str) -> None:
    assert problems(template(relative), relative) == []


def test_the_vendored_definitions_are_exactly_the_types_infra_declares() -> None:
    # A new type or apiVersion in infra/ needs tools/extract_azure_types.py run again (and no
    # definition is kept that nothing uses).
    declared = {m.lower() for relative in TEMPLATES for m in DECLARED.findall(text(relative))}
    assert {name.lower() for name in definitions()["resources"]} == declared


def seeded(relative: str, old: str, new: str) -> list[str]:
    source = text(relative)
    assert source.count(old) == 1, f"{old!r} must occur once in {relative}"
    return problems(BicepParser().parse(text=source.replace(old, new)), relative)


def test_an_api_version_azure_does_not_have_is_caught() -> None:
    found = seeded(
        "modules/functionapp.bicep", "'Microsoft.Web/sites@2024-04-01'", "'Microsoft.Web/sites@2024-04-31'"
    )
    assert found == [
        "modules/functionapp.bicep site (Microsoft.Web/sites@2024-04-31): "
        "Azure defines no resource type Microsoft.Web/sites@2024-04-31"
    ]


def test_a_misspelt_property_is_caught() -> None:
    found = seeded("modules/storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAcess: false")
    assert found == [
        "modules/storage.bicep account (Microsoft.Storage/storageAccounts@2023-05-01) "
        "properties.allowSharedKeyAcess: is not a property of "
        "StorageAccountPropertiesCreateParametersOrStorageAccountProperties"
    ]


def test_a_read_only_property_is_caught() -> None:
    found = seeded(
        "modules/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: false\n    creationTime: '2026-12-07'",
    )
    assert found == [
        "modules/storage.bicep account (Microsoft.Storage/storageAccounts@2023-05-01) "
        "properties.creationTime: is read-only: Azure sets it, a template cannot"
    ]


def test_an_enum_value_azure_does_not_allow_is_caught() -> None:
    found = seeded("modules/storage.bicep", "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_4'")
    assert found == [
        "modules/storage.bicep account (Microsoft.Storage/storageAccounts@2023-05-01) "
        "properties.minimumTlsVersion: 'TLS1_4' is not allowed; use one of TLS1_0, TLS1_1, TLS1_2, TLS1_3"
    ]


def test_a_mistake_inside_a_loop_body_is_caught() -> None:
    # main.bicep's Activity Log export lists its categories with a [for ...] loop.
    found = seeded(
        "main.bicep", "      enabled: true\n    }]", "      enabled: true\n      retention: 30\n    }]"
    )
    assert found == [
        "main.bicep activityLogExport (Microsoft.Insights/diagnosticSettings@2021-05-01-preview) "
        "properties.logs[for].retention: is not a property of LogSettings"
    ]
