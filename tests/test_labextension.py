"""The JupyterLab 4 / Notebook 7 extension ships prebuilt in the package: the committed build
matches its sources, a built wheel carries it and the server extension's switch so Jupyter
lists both enabled, and the editable install `make` sets up links the same files."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
BUILT = ROOT / "nb2flow" / "labextension"


def _build_module():
    spec = importlib.util.spec_from_file_location("labext_build", ROOT / "labextension/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_build_matches_its_sources():
    build = _build_module()
    assert build.built_digest() == build.source_digest(), (
        "labextension/ changed without a rebuild: run `make labextension` and commit "
        "nb2flow/labextension"
    )
    package = json.loads((BUILT / "package.json").read_text())
    remote = BUILT / package["jupyterlab"]["_build"]["load"]
    assert package["name"] == "nb2flow" and remote.is_file()
    assert (BUILT / "schemas" / "nb2flow" / "plugin.json").is_file()


def _jupyter(*args: str, env: dict[str, str]) -> str:
    """What `jupyter ARGS` prints (stdout and stderr, colours removed)."""
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)


def test_a_wheel_carries_the_extension_and_jupyter_lists_it_enabled(tmp_path: Path):
    pytest.importorskip("jupyterlab")
    pytest.importorskip("setuptools")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("nb2flow-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        data = "nb2flow-0.1.0.data/data/"
        # the package itself (for `jupyter labextension develop`) and the data files
        # pip puts under the environment's share/ and etc/
        assert "nb2flow/labextension/package.json" in names
        for name in (BUILT / "static").iterdir():
            assert f"{data}share/jupyter/labextensions/nb2flow/static/{name.name}" in names
        assert f"{data}etc/jupyter/jupyter_server_config.d/nb2flow.json" in names
        z.extractall(tmp_path / "wheel")
    prefix = tmp_path / "wheel" / data
    env = dict(
        os.environ,
        JUPYTER_PATH=str(prefix / "share" / "jupyter"),
        JUPYTER_CONFIG_PATH=str(prefix / "etc" / "jupyter"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
    )
    listed = _jupyter("labextension", "list", env=env)
    section = listed.split(str(prefix / "share" / "jupyter" / "labextensions"), 1)
    assert len(section) == 2, listed  # the wheel's folder is listed ...
    assert "nb2flow v0.1.0 enabled OK" in section[1].splitlines()[1], listed  # ... with it
    servers = _jupyter("server", "extension", "list", env=env)
    assert "nb2flow enabled" in servers, servers


def test_the_environment_has_it_enabled():
    """What `make` sets up for the editable install (a wheel install does the same)."""
    linked = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nb2flow"
    assert (linked / "package.json").is_file(), f"{linked} missing: run `make` (its venv step)"
    assert json.loads((linked / "package.json").read_text())["name"] == "nb2flow"
    config = Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/nb2flow.json"
    assert json.loads(config.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"nb2flow": True}}
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    listed = _jupyter("labextension", "list", env=env)
    assert "nb2flow v0.1.0 enabled OK" in listed, listed
