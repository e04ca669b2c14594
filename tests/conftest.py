"""Shared fixtures: every test gets its own run store and no live panel."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# the browser tests' shared checks live there: rewrite its asserts for full failure detail
pytest.register_assert_rewrite("tests.browser_harness", "browser_harness")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("nb2flow_home")
    monkeypatch.setenv("NB2FLOW_HOME", str(home))
    monkeypatch.setenv("NB2FLOW_PANEL", os.environ.get("NB2FLOW_TEST_PANEL", "off"))
    yield home


def require(what: str, available: bool, reason: str) -> None:
    """Skip when the machine truly lacks `what`; fail instead under CI (NB2FLOW_REQUIRE_<WHAT>=1)."""
    if available:
        return
    if os.environ.get(f"NB2FLOW_REQUIRE_{what.upper()}") == "1":
        pytest.fail(f"{what} is required in CI but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    require("browser", os.path.exists(path), "Debian's chromium is not installed")
    return path
