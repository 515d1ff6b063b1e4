"""One devstack per test session: real HTTPS endpoints on 127.0.0.1, real SDK clients."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from devstack.stack import Devstack


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    state = tmp_path_factory.mktemp("devstack")
    with Devstack(state_dir=state, data_dir=state / "logs") as stack:
        yield stack


@pytest.fixture
def app_env(devstack: Devstack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The devstack's app settings in the process environment, as the Functions host sets them."""
    devstack.log_analytics.clear()
    devstack.teams.clear()
    # A fresh prefix per test: hash(monkeypatch) was id-based, and a freed fixture's address comes back.
    settings = devstack.app_settings(STATE_TABLE_PREFIX=f"t{uuid.uuid4().hex[:12]}")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def function_app(app_env: dict[str, str]) -> Iterator[ModuleType]:
    """function_app.py imported fresh, so its cached settings and clients are this test's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    yield module
    sys.modules.pop("function_app", None)
    sys.path.pop(0)
