"""``%load_ext nb2flow`` / ``%nb2flow`` in real kernels, no browser: a Jupyter server (one for
the module) starts the kernels of its sessions, as JupyterLab does, and the tests drive them
through their connection files. Covered: finding the notebook from the server's sessions
(and from ``JPY_SESSION_NAME``, and the error when nothing names it), running in the
notebook's folder, ``-p`` parameters, the fresh re-import after an edit with only the edited
task and its downstream re-run (the rest Cached), the front end's unsaved snapshot, ``inspect``,
``convert``, and every error as one ``error:`` line without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from browser_harness import JupyterServer, jupyter_server, write_json
from notebooks.nbbuild import code

pytestmark = [pytest.mark.slow]

WRITE = 'total = sum(xs){}\nwith open("result.txt", "w") as f:\n    f.write(str(total))'
FLOW_CELLS = [
    code("%load_ext nb2flow"),
    code("n = 3", "parameters"),
    code("xs = list(range(n))", "task:make", "cache"),
    # (the file is named in the code: a path argument naming a file would key the cache on
    # the file's modification time, which this very task changes)
    code(WRITE.format(""), "task:write", "cache"),
    code("%nb2flow run"),
]


def notebook(cells: list[Any]) -> dict:
    """A version-4 notebook of `cells` as JSON data (ids fixed)."""
    from nbformat.v4 import new_notebook

    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        },
    )
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return json.loads(json.dumps(nb))


def flow_notebook(write_cell: str | None = None) -> dict:
    cells = list(FLOW_CELLS)
    if write_cell is not None:
        cells[3] = code(write_cell, "task:write", "cache")
    return notebook(cells)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("magics")
    # the panel off: the run's progress lines are the text to check
    with jupyter_server(tmp, "server", {"NB2FLOW_PANEL": "off"}) as s:
        yield s


class Kernel:
    """A kernel of the server's session for one notebook, driven by its connection file."""

    def __init__(self, server: JupyterServer, path: str) -> None:
        from jupyter_client import BlockingKernelClient

        body = {"path": path, "name": Path(path).name, "type": "notebook",
                "kernel": {"name": "python3"}}  # fmt: skip
        self.session = _request(server, "/api/sessions", body)
        kid = self.session["kernel"]["id"]
        connection = server.tmp / "runtime" / f"kernel-{kid}.json"
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts kernels slowly
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        # the client tells a live kernel by its heartbeat: one unanswered for 1 s (the
        # default) is "died" to it, which a kernel still starting on a loaded machine is not
        self.client.hb_channel.time_to_dead = 10.0
        self.client.start_channels()
        self.client.wait_for_ready(timeout=180)

    def run(self, source: str, cell_id: str | None = None, timeout: float = 120) -> dict[str, Any]:
        """Execute `source` as a front end does (with a cell id); what came out."""
        c = self.client
        msg = c.session.msg(
            "execute_request",
            {"code": source, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
            metadata={"cellId": cell_id or uuid.uuid4().hex},
        )  # fmt: skip
        c.shell_channel.send(msg)
        out: dict[str, Any] = {"stdout": "", "stderr": "", "errors": [], "html": []}
        deadline = time.monotonic() + timeout
        while True:
            reply = c.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            kind, content = reply["msg_type"], reply["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                out["errors"].append(f"{content['ename']}: {content['evalue']}")
            elif kind in ("display_data", "execute_result"):
                out["html"].append(content["data"].get("text/html", ""))
            elif kind == "status" and content["execution_state"] == "idle":
                return out

    def close(self) -> None:
        self.client.stop_channels()


def _request(server: JupyterServer, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def last_run(server: JupyterServer) -> dict[str, str]:
    """task -> state of the newest run in the server's run store."""
    env = dict(os.environ, NB2FLOW_HOME=str(server.tmp / "home"))
    cmd = [sys.executable, "-m", "nb2flow"]
    runs = json.loads(subprocess.check_output([*cmd, "runs", "--json", "--limit", "1"], env=env))
    shown = json.loads(subprocess.check_output([*cmd, "show", runs[0]["id"], "--json"], env=env))
    return {t["name"]: t["state"] for t in shown["tasks"]}


def no_traceback(out: dict[str, Any]) -> None:
    text = out["stdout"] + out["stderr"]
    assert "Traceback" not in text and not out["errors"], out


@pytest.fixture(scope="module")
def project(server: JupyterServer) -> Path:
    folder = server.root / "proj"
    write_json(folder / "flow.ipynb", flow_notebook())
    return folder


@pytest.fixture(scope="module")
def kernel(server: JupyterServer, project: Path):
    k = Kernel(server, "proj/flow.ipynb")
    assert k.run("%load_ext nb2flow")["errors"] == []
    yield k
    k.close()


def test_loading_again_is_silent(kernel):
    # a re-run `%load_ext nb2flow` cell (the first line of every "Run as flow" cell) says
    # nothing, where IPython would print "The nb2flow extension is already loaded..."
    for source in ("%load_ext nb2flow", "%load_ext nb2flow", "%reload_ext nb2flow"):
        out = kernel.run(source)
        assert (out["stdout"], out["stderr"], out["errors"]) == ("", "", []), (source, out)
    assert kernel.run("%nb2flow")["stdout"].startswith("%nb2flow run [-p NAME=VALUE ...]")
    # other extensions keep IPython's own rule
    kernel.run("%load_ext autoreload")
    assert "already loaded" in kernel.run("%load_ext autoreload")["stdout"]


def test_run_finds_the_notebook_and_runs_in_its_folder(kernel, project, server):
    # the kernel's session names the notebook; its relative path lands in its folder
    kernel.run("import os; os.chdir('/')")  # wherever the kernel is, the flow runs there
    out = kernel.run("%nb2flow run")
    no_traceback(out)
    assert (project / "result.txt").read_text() == "3"
    assert "Completed" in out["stderr"], out
    assert kernel.run("print(os.getcwd())")["stdout"].strip() == "/"  # and comes back
    kernel.run(f"os.chdir({str(project)!r})")


def test_parameters_and_the_cache(kernel, project, server):
    out = kernel.run("%nb2flow run -p n=5")
    no_traceback(out)
    assert (project / "result.txt").read_text() == "10"
    assert last_run(server) == {"make": "Completed", "write": "Completed"}
    kernel.run("%nb2flow run")  # back to n=3: both come from the first run's cache
    assert last_run(server) == {"make": "Cached", "write": "Cached"}


def test_an_edit_reruns_only_its_task_and_what_follows(kernel, project, server):
    write_json(project / "flow.ipynb", flow_notebook(WRITE.format(" * 2")))
    out = kernel.run("%nb2flow run")
    no_traceback(out)
    assert (project / "result.txt").read_text() == "6"  # the new code ran: imported fresh
    assert last_run(server) == {"make": "Cached", "write": "Completed"}


def test_unsaved_content_handed_over_by_the_front_end(kernel, project, server):
    saved = (project / "flow.ipynb").read_text()
    unsaved = flow_notebook(WRITE.format(" * 3"))
    # what the JupyterLab extension does as a %nb2flow cell starts
    body = {"path": "proj/flow.ipynb", "cell": "cell-abc", "notebook": unsaved}
    assert _request(server, "/nb2flow/snapshot", body) == {"ok": True}
    out = kernel.run("%nb2flow run", cell_id="cell-abc")
    no_traceback(out)
    assert (project / "result.txt").read_text() == "9"
    assert (project / "flow.ipynb").read_text() == saved  # nothing was saved for it
    assert last_run(server) == {"make": "Cached", "write": "Completed"}
    # the snapshot is used once: the next run reads the saved file again (whose `* 2`
    # version ran before: Cached)
    kernel.run("%nb2flow run", cell_id="cell-abc")
    assert last_run(server) == {"make": "Cached", "write": "Cached"}


def test_errors_are_one_line(kernel, project):
    out = kernel.run("%nb2flow run -p nope=1")
    no_traceback(out)
    assert out["stderr"].strip() == (
        "error: -p nope=1: the flow has no parameter 'nope' (parameters: n)"
    )
    out = kernel.run("%nb2flow run -p n=many")
    no_traceback(out)
    assert "argument --n: invalid int value: 'many'" in out["stderr"]
    out = kernel.run("%nb2flow fly")
    no_traceback(out)
    assert out["stderr"].startswith("error: %nb2flow: argument command: invalid choice: 'fly'")

    write_json(project / "bad.ipynb", notebook([code("x = 1"), code("y = (", "task:t")]))
    out = kernel.run("%nb2flow run bad.ipynb")
    no_traceback(out)
    assert out["stderr"].startswith("error: bad.ipynb, cell 2, line 1: syntax error"), out

    write_json(project / "setup.ipynb", notebook([
        code("import math"), code("ratio = 1\nscale = ratio / 0", "setup"), code("y = scale", "task:t"),
    ]))  # fmt: skip
    out = kernel.run("%nb2flow run setup.ipynb")
    no_traceback(out)
    # setup code runs in the flow run (never at import): its error fails the run, in one line
    # naming the setup and the cell it failed at
    assert (
        "error: flow 'setup' Failed: the flow's setup failed at setup.ipynb, cell 2, line 2: "
        "ZeroDivisionError: division by zero"
    ) in out["stderr"]

    write_json(project / "fails.ipynb", notebook([code("raise ValueError('no data')", "task:t")]))
    out = kernel.run("%nb2flow run fails.ipynb")
    no_traceback(out)
    assert "error: flow 'fails' Failed: task 't' failed: ValueError: no data" in out["stderr"]

    out = kernel.run("%nb2flow run missing.ipynb")
    assert out["stderr"].strip() == "error: missing.ipynb: no such notebook"


def test_inspect_shows_the_plan(kernel):
    out = kernel.run("%nb2flow inspect")
    no_traceback(out)
    html = "".join(out["html"])
    assert 'class="nb2f-plan"' in html and "<svg" in html
    assert "<td><b>make</b></td><td>cell 3</td>" in html
    assert 'data-task="write"' in html  # the graph's node
    assert "nb2flow: cells 1, 5" in html  # the cells driving nb2flow are left out


def test_convert_writes_the_script(kernel, project):
    out = kernel.run("%nb2flow convert -o scripts")
    no_traceback(out)
    script = project / "scripts" / "flow.py"
    assert out["stdout"].startswith(f"flow.ipynb -> scripts{os.sep}flow.py"), out
    text = script.read_text()
    assert 'run_in_folder(__file__, "..")' in text and "%nb2flow" not in text
    # the script runs from anywhere, in the notebook's folder
    (project / "result.txt").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, str(script), "--quiet", "--no-store", "--n", "4"],
        cwd="/",
        env=dict(os.environ, NB2FLOW_CACHE="off"),
    )
    assert done.returncode == 0 and (project / "result.txt").read_text() == "12"


def _plain_kernel(tmp: Path, env: dict[str, str]):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp), env={**os.environ, **env, "NB2FLOW_PANEL": "off"})
    kc = km.blocking_client()
    kc.start_channels()
    kc.wait_for_ready(timeout=180)
    return km, kc


def _execute(kc: Any, source: str) -> dict[str, str]:
    out = {"stdout": "", "stderr": ""}

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out[msg["content"]["name"]] += msg["content"]["text"]

    kc.execute_interactive(source, output_hook=hook, timeout=120)
    return out


def test_path_from_jpy_session_name_and_the_error_without(tmp_path: Path):
    pytest.importorskip("jupyter_client")
    write_json(tmp_path / "alone.ipynb", notebook([code("a = 1", "task:one")]))
    km, kc = _plain_kernel(tmp_path, {"JPY_SESSION_NAME": str(tmp_path / "alone.ipynb")})
    try:
        _execute(kc, "%load_ext nb2flow")
        out = _execute(kc, "%nb2flow run")
        assert "alone" in out["stderr"] and "Completed" in out["stderr"], out
        assert "Traceback" not in out["stderr"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km, kc = _plain_kernel(tmp_path, {"JPY_SESSION_NAME": ""})
    try:
        _execute(kc, "%load_ext nb2flow")
        out = _execute(kc, "%nb2flow run")
        assert out["stderr"].strip() == (
            "error: cannot tell which notebook this kernel runs (no Jupyter server session "
            "names it); pass its path: %nb2flow run path/to/notebook.ipynb"
        )
        # VS Code's conditions: a kernel it started itself (no server, no session, no
        # JPY_SESSION_NAME), told its notebook by the variable VS Code sets at its start
        (tmp_path / "vs").mkdir()
        write_json(tmp_path / "vs" / "code.ipynb", notebook([code("b = 2", "task:two")]))
        _execute(kc, f"__vsc_ipynb_file__ = {str(tmp_path / 'vs' / 'code.ipynb')!r}")
        out = _execute(kc, "%nb2flow run")
        assert "code" in out["stderr"] and "Completed" in out["stderr"], out
        assert "Traceback" not in out["stderr"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --------------------------------------------------------------------------- path discovery


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch):
    """Discovery with no kernel session and no JPY_SESSION_NAME; yields the shell's user
    namespace (a stand-in for IPython's: only ``user_ns`` is read)."""
    from types import SimpleNamespace

    from nb2flow.extensions import magics

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(magics, "_from_sessions", lambda: None)
    user_ns: dict[str, Any] = {}
    monkeypatch.setattr(magics, "_ipython", lambda: SimpleNamespace(user_ns=user_ns))
    return user_ns


def test_vscode_names_the_notebook(no_session, tmp_path: Path, monkeypatch):
    from nb2flow.errors import Nb2flowError
    from nb2flow.extensions.magics import notebook_path

    mine, other = tmp_path / "mine.ipynb", tmp_path / "other.ipynb"
    for path in (mine, other):
        write_json(path, notebook([code("a = 1")]))
    no_session["__vsc_ipynb_file__"] = str(mine)
    assert notebook_path() == mine.resolve()
    # VS Code is the front end: its word wins over what the kernel's environment says
    monkeypatch.setenv("JPY_SESSION_NAME", str(other))
    assert notebook_path() == mine.resolve()
    # on __main__ only (where VS Code's startup code puts it when the namespaces differ)
    del no_session["__vsc_ipynb_file__"]
    monkeypatch.delenv("JPY_SESSION_NAME")
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__vsc_ipynb_file__", str(other), raising=False)
    assert notebook_path() == other.resolve()
    # an untitled notebook VS Code has not saved yet: say so, do not guess another
    monkeypatch.setattr(main, "__vsc_ipynb_file__", str(tmp_path / "Untitled-1.ipynb"))
    with pytest.raises(Nb2flowError, match=r"Untitled-1.ipynb: VS Code's notebook is not saved"):
        notebook_path()
    # an explicit path always wins
    assert notebook_path(str(mine)) == mine.resolve()


def test_jpy_session_name_relative_to_the_kernels_folder(no_session, tmp_path, monkeypatch):
    from nb2flow.errors import Nb2flowError
    from nb2flow.extensions.magics import notebook_path

    write_json(tmp_path / "nb.ipynb", notebook([code("a = 1")]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", "some/dir/nb.ipynb")
    assert notebook_path() == (tmp_path / "nb.ipynb").resolve()
    monkeypatch.setenv("JPY_SESSION_NAME", "some/dir/gone.ipynb")
    with pytest.raises(Nb2flowError, match="cannot tell which notebook"):
        notebook_path()
