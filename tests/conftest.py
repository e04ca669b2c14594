"""Shared fixtures: every test gets its own run store and no live panel."""

from __future__ import annotations

import importlib.util
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


def require_modules(what: str, *modules: str) -> None:
    """:func:`require` for each of ``modules`` being importable."""
    for module in modules:
        require(what, importlib.util.find_spec(module) is not None, f"{module} missing")


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    require("browser", os.path.exists(path), "Debian's chromium is not installed")
    return path


class Account:
    """A second real account on this machine (see the ``other_account`` fixture)."""

    def __init__(self, name: str) -> None:
        import pwd

        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid

    def run(self, args: list[str], **kwargs):
        """Run ``args`` as this account (no supplementary groups), output captured."""
        import subprocess

        env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
        env.update(kwargs.pop("env", {}))
        return subprocess.run(
            args,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )

    def python(self, code: str, *argv: str):
        """Run Python ``code`` (the standard library only) as this account."""
        return self.run([self.interpreter(), "-I", "-c", code, *argv])

    def interpreter(self) -> str:
        """The first Python interpreter this account may execute (the test's own may sit in
        a folder only root enters)."""
        import sys

        if not hasattr(self, "_python"):
            for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
                try:
                    if self.run([candidate, "-c", "pass"]).returncode == 0:
                        self._python = candidate
                        break
                except OSError:
                    continue
            else:
                pytest.skip(f"no Python interpreter that {self.name} may run")
        return self._python


@pytest.fixture(scope="session")
def other_account():
    """A second real account (``useradd``), removed at the end of the session: the attacker
    of the security tests. Skipped (with the reason) only where this is not root or there is
    no ``useradd``; CI runs as root here, so there it always runs."""
    import subprocess
    import time

    if os.geteuid() != 0:
        pytest.skip("making a second account needs root (useradd)")
    if not shutil.which("useradd") or not shutil.which("userdel"):
        pytest.skip("no useradd/userdel on this machine")
    name = f"nb2t{os.getpid()}"
    for attempt in range(20):  # /etc/passwd is locked while another useradd runs
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", "-s", "/bin/false", name],
            capture_output=True,
            text=True,
        )
        if done.returncode in (0, 9):  # 9: it exists already (a crashed earlier run)
            break
        time.sleep(0.1 * (attempt + 1))
    else:
        pytest.fail(f"useradd {name} failed: {done.stderr.strip()}")
    try:
        yield Account(name)
    finally:
        for attempt in range(20):
            if subprocess.run(["userdel", name], capture_output=True).returncode in (0, 6):
                break
            time.sleep(0.1 * (attempt + 1))


@pytest.fixture
def shared_dir():
    """A world-writable sticky folder like /tmp (pytest's own tmp folders are 0700, which
    another account cannot enter). Removed afterwards."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="nb2flow-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)
