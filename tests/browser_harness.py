"""Plumbing shared by the real-browser tests: a Jupyter server (JupyterLab 4 or Notebook 7) on
127.0.0.1 with its own temporary folders and no token, headless Debian Chromium driven by
Playwright, running every cell of a notebook and waiting for the kernel to be idle, and the
texts ipywidgets shows when a widget cannot be displayed. Also the flow notebook the tests run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from conftest import require_modules

App = Literal["lab", "notebook", "server"]
REPO = Path(__file__).resolve().parent.parent

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: what JupyterLab / Notebook 7 / ipywidgets show when a widget view cannot be made
WIDGET_FAILURES = [
    "Error displaying widget",
    "Loading widget...",
    "No renderer could be found",
    "Failed to load model class",
]

# --------------------------------------------------------------------------- the flow notebook

FLOW_CELL = """\
import time
from nb2flow import flow, get_run_logger, task
from nb2flow.runtime.api import unmapped

@task
def load_data(path: str):
    get_run_logger().info(f"reading {path} <b>as text</b>")
    # long enough that the page shows it Running even when a loaded machine makes the front
    # end slow to create the panel's view (the later tasks run for 0.05-0.15 s each)
    time.sleep(1.0)
    return list(range(100))

@task
def features(rows):
    time.sleep(0.1)
    get_run_logger().warning("dropped 3 rows with a negative duration")
    return rows[3:]

calls = []

@task(retries=1, retry_delay_seconds=0.1)
def train(X, max_depth: int):
    calls.append(1)
    time.sleep(0.1)
    if len(calls) == 1:
        raise ConnectionError("mlflow server not reachable")
    return {"depth": max_depth}

@task
def score(model, part):
    time.sleep(0.05 * (part + 1))
    return part

@task
def evaluate(model, scores):
    time.sleep(0.05)
    raise ValueError("bad value <42> in evaluate")

@task
def register_model(rmse):
    return rmse

@flow(name="duration-prediction")
def main(path: str = "data/green_2021-01.parquet", max_depth: int = 30):
    X = features.submit(load_data.submit(path))
    model = train.submit(X, max_depth)
    scores = score.map(unmapped(model), [0, 1, 2])
    rmse = evaluate.submit(model, scores)
    return register_model.submit(rmse)

state = main(return_state=True)
"""
RUNS_CELL = "from nb2flow.jupyter import runs\nruns()"

#: task -> final state the notebook's run must show
EXPECTED = {
    "load_data": "Completed",
    "features": "Completed",
    "train": "Completed",
    "score[0]": "Completed",
    "score[1]": "Completed",
    "score[2]": "Completed",
    "evaluate": "Failed",
    "register_model": "NotRun",
}
ERROR_TEXT = "bad value <42> in evaluate"


def notebook(*sources: str) -> dict:
    """An nbformat 4 notebook (as JSON) with one code cell per source, never run."""
    cells = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in sources
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


#: the module each front end is started with, and its application class (for its options)
_APPS: dict[str, tuple[str, str]] = {
    "lab": ("jupyterlab", "LabApp"),
    "notebook": ("notebook", "JupyterNotebookApp"),
    "server": ("jupyter_server", "ServerApp"),  # no front end: the kernel-level tests
}


class JupyterServer:
    """`python -m jupyterlab` or `python -m notebook` on 127.0.0.1, a free port, no token, with
    config, data, runtime, settings and NB2FLOW_HOME folders under `tmp` and the panel on."""

    def __init__(
        self, tmp: Path, app: App = "lab", extra_env: dict[str, str] | None = None
    ) -> None:
        self.tmp = tmp
        self.app = app
        self.root = tmp / "root"
        self.root.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings" / "@jupyterlab"
        # every cell rendered (no virtual scrolling), no news/update toasts over the page;
        # Notebook 7 is built from the same JupyterLab plugins and reads the same settings
        write_json(
            settings / "notebook-extension" / "tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        write_json(
            settings / "apputils-extension" / "notification.jupyterlab-settings",
            {"checkForUpdates": False, "fetchNews": "false", "doNotDisturbMode": True},
        )
        # this checkout's JupyterLab extension and server-extension switch come first (as
        # PYTHONPATH makes its Python code come first): what the package installs, from here
        share = tmp / "share"
        (share / "labextensions").mkdir(parents=True)
        (share / "labextensions" / "nb2flow").symlink_to(REPO / "nb2flow" / "labextension")
        env = dict(os.environ)
        env.update(
            JUPYTER_PATH=str(share),
            JUPYTER_CONFIG_PATH=str(REPO / "jupyter-config"),
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_DATA_DIR=str(tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            IPYTHONDIR=str(tmp / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            NB2FLOW_HOME=str(tmp / "home"),
            NB2FLOW_PANEL="on",
        )
        env.update(extra_env or {})
        module, cls = _APPS[app]
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            "--IdentityProvider.token=",
            "--PasswordIdentityProvider.hashed_password=",
            "--ServerApp.allow_root=True",
            "--ServerApp.terminals_enabled=False",
        ]
        if app != "server":
            cmd.append(f"--{cls}.expose_app_in_browser=True")
        else:  # the tests post to the REST API without a browser's XSRF cookie
            cmd.append("--ServerApp.disable_check_xsrf=True")
        # Notebook 7 loads the jupyterlab server extension too, whose handlers answer the
        # front end's /lab/api/settings: both applications are given the temporary folders
        for c in dict.fromkeys(("LabApp", cls)) if app != "server" else ():
            cmd += [
                f"--{c}.user_settings_dir={tmp / 'settings'}",
                f"--{c}.workspaces_dir={tmp / 'workspaces'}",
            ]
        if app == "lab":  # options only JupyterLab has
            cmd += [
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def notebook_url(self, name: str) -> str:
        """Where the front end opens the notebook `name` (a path under the root folder)."""
        prefix = "/lab/tree/" if self.app == "lab" else "/notebooks/"
        return self.url + prefix + urllib.parse.quote(name)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/api", timeout=1) as r:
                    json.load(r)
                    return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise TimeoutError(f"jupyter {self.app} did not answer: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.tmp / "server.log").read_bytes()[-2000:].decode(errors="replace")

    def children(self) -> list[int]:
        """The server's child processes (its kernels run in sessions of their own)."""
        out = []
        for d in os.listdir("/proc"):
            try:
                stat = (Path("/proc") / d / "stat").read_text()
                if d.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            kernels = self.children()
            # SIGTERM lets the server shut its kernels down
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            for pid in kernels:  # only if the server could not stop them itself
                try:
                    if b"ipykernel" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass
        self.log.close()


@contextmanager
def jupyter_server(
    tmp: Path, app: App = "lab", extra_env: dict[str, str] | None = None
) -> Iterator[JupyterServer]:
    """A started server, stopped (with its kernels) on exit. Skips when the front end,
    Playwright or ipywidgets is not installed; fails instead in CI (conftest.require)."""
    needs = ("jupyter_server", "ipykernel") if app == "server" else ("playwright", "ipywidgets")
    require_modules("browser", _APPS[app][0], *needs)
    server = JupyterServer(tmp, app, extra_env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- the browser


def open_browser(chromium_path: str) -> tuple[Any, Any]:
    """Playwright and Debian's Chromium (never a downloaded browser)."""
    require_modules("browser", "playwright")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise
    return pw, browser


@contextmanager
def browser_page(
    chromium_path: str,
    tmp: Path,
    server: JupyterServer | None = None,
    viewport: dict[str, int] | None = None,
) -> Iterator[Any]:
    """A fresh page in headless Chromium. When the body fails, the page's screenshot goes to
    `tmp/failure.png` and the server log and console errors are printed for whoever reads it."""
    pw, browser = open_browser(chromium_path)
    console: list[str] = []
    page = None
    try:
        page = browser.new_page(viewport=viewport or {"width": 1280, "height": 1000})
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        yield page
    except BaseException:
        try:
            if page is not None:
                page.screenshot(path=str(tmp / "failure.png"))
        except Exception:  # noqa: BLE001 - the original failure matters, not this one
            pass
        print(f"screenshot: {tmp / 'failure.png'}")
        if server is not None:
            print(f"server log:\n{server.log_tail()}")
        print("console errors:", console[:10])
        raise
    finally:
        browser.close()
        pw.stop()


#: runs every cell through the front end's own command, watching the panel's node states
#: while the cells run, then waits for the kernel to be idle; works in JupyterLab and
#: Notebook 7 (both expose `window.jupyterapp`, a shell whose current widget is the notebook
#: panel, and the `notebook:run-all-cells` command)
_RUN_ALL = r"""
async ({timeoutMs}) => {
  const t0 = performance.now();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const left = () => timeoutMs - (performance.now() - t0);
  const waitFor = async (pred, what) => {
    while (true) { const v = pred(); if (v) return v;
      if (left() <= 0) throw new Error('timeout waiting for ' + what); await sleep(25); } };
  const app = window.jupyterapp;
  await app.restored;
  const panel = await waitFor(() => { const w = app.shell.currentWidget;
      return (w && w.sessionContext && w.content && w.content.widgets) ? w : null; }, 'notebook');
  await panel.context.ready;
  await panel.sessionContext.ready;
  await waitFor(() => { const k = panel.sessionContext.session &&
      panel.sessionContext.session.kernel;
      return k && k.connectionStatus === 'connected' && k.status === 'idle'; }, 'kernel');
  if (app.shell.collapseLeft) app.shell.collapseLeft();
  if (app.shell.collapseRight) app.shell.collapseRight();
  const kernel = panel.sessionContext.session.kernel;
  // watch the panel while the cell runs: live updates must reach the page before the end
  const seen = new Set();
  let ran = false;
  app.commands.execute('notebook:run-all-cells').then(() => { ran = true; });
  while (!ran || kernel.status !== 'idle') {
    for (const g of document.querySelectorAll('.nb2f-panel g.nb2f-node'))
      seen.add(g.dataset.state);
    if (left() <= 0) throw new Error('timeout waiting for the run');
    await sleep(15);
  }
  const errors = [];
  let executed = 0;
  for (const c of panel.content.widgets) {
    if (c.model.type !== 'code') continue;
    if (c.model.executionCount) executed++;
    const outs = c.model.outputs;
    for (let i = 0; i < outs.length; i++) {
      const o = outs.get(i).toJSON();
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
    }
  }
  return {executed, errors, seen: [...seen].sort()};
}
"""


def open_notebook(page: Any, server: JupyterServer, name: str, nb: dict) -> None:
    """Write `nb` as `name` under the server's root and open it in the page's front end."""
    write_json(server.root / name, nb)
    page.goto(server.notebook_url(name), wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)


def run_all_cells(page: Any, timeout_ms: int = 90_000) -> dict[str, Any]:
    """Run every cell of the open notebook and wait until the kernel is idle again. Returns
    `executed` (code cells with an execution count), `errors` (error outputs, `ename: evalue`)
    and `seen` (the panel node states seen in the page while the cells were running)."""
    return page.evaluate(_RUN_ALL, {"timeoutMs": timeout_ms})


def wait_for_states(page: Any, want: dict[str, str], timeout_ms: int = 20_000) -> None:
    """Wait until the first panel's graph shows every task of `want` in its state (the
    panel thread's final render lands shortly after the cell ends)."""
    page.wait_for_function(
        """(want) => { const got = Object.fromEntries(
             [...document.querySelectorAll('.nb2f-panel g.nb2f-node')]
             .map(g => [g.dataset.task, g.dataset.state]));
           return Object.entries(want).every(([k, v]) => got[k] === v); }""",
        arg=want,
        timeout=timeout_ms,
    )


def node_states(page: Any, root: str) -> dict[str, str]:
    """task -> state of the graph nodes under the first element matching `root`'s selector."""
    return page.evaluate(
        """(root) => Object.fromEntries([...document.querySelectorAll(root + ' g.nb2f-node')]
             .map(g => [g.dataset.task, g.dataset.state]))""",
        root,
    )


def widget_errors(page: Any) -> list[str]:
    """What the page shows instead of a widget: the failure texts found in the cells' output
    areas and the error widgets ipywidgets puts in place of a view. Empty when all is well."""
    outputs = "\n".join(page.locator(".jp-Cell-outputArea").all_inner_texts())
    found = [text for text in WIDGET_FAILURES if text in outputs]
    n = page.locator(".jupyter-widgets-error-widget").count()
    return found + [f"{n} error widget(s)"] * (n > 0)


# --------------------------------------------------------------------------- shared checks


def click_tab(panel: Any, name: str) -> None:
    """Open a tab of a panel: the live widget's tab bar, or the static final panel's tab
    labels (radio buttons and CSS: they work without a kernel)."""
    live = panel.locator(".lm-TabBar-tab", has_text=name)
    if live.count():
        live.first.click()
    else:
        panel.locator("label.nb2f-tab", has_text=name).first.click()


# plain asserts with messages: pytest does not rewrite the asserts of this helper module


def check_final_panel(page: Any) -> Any:
    """The first panel of the page shows the flow notebook's run as it ended: every node in
    its final state, the header's Failed badge and the failed task's error without a click.
    Returns the panel's locator."""
    # when its run has ended, the live panel's output becomes the static final panel
    panel = page.locator(".nb2f-panel.nb2f-static").first
    panel.wait_for(state="visible", timeout=20_000)
    wait_for_states(page, EXPECTED)
    states = node_states(page, ".nb2f-panel")
    got = {k: states.get(k) for k in EXPECTED}
    assert got == EXPECTED, f"node states {got} != {EXPECTED}"
    head = panel.locator(".nb2f-head").inner_text()
    assert "Failed" in head, f"no Failed badge in the header: {head!r}"
    error = panel.locator(".nb2f-error")
    assert error.is_visible(), "the failed task's error is not visible in the header"
    assert ERROR_TEXT in error.inner_text(), error.inner_text()
    assert panel.locator("svg.nb2f-graph").is_visible(), "the graph is not visible"
    return panel


def check_error_tabs(page: Any, panel: Any) -> None:
    """The Tasks tab shows the error next to the failed task, the Logs tab its traceback."""
    click_tab(panel, "Tasks")
    failed_row = panel.locator('tr.nb2f-tr[data-state="Failed"]').first
    failed_row.wait_for(state="visible", timeout=10_000)
    assert ERROR_TEXT in failed_row.inner_text(), failed_row.inner_text()
    click_tab(panel, "Logs")
    logs = panel.locator(".nb2f-logs").first
    logs.wait_for(state="visible", timeout=10_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nb2f-panel .nb2f-logs')].some(e => "
        "e.innerText.includes('Traceback'))",
        timeout=10_000,
    )
    assert ERROR_TEXT in logs.inner_text(), "the error is not in the logs"


def check_runs_listed(page: Any) -> Any:
    """The run browser (`runs()`, the last output) lists the one run of the flow notebook.
    Returns its run `select`."""
    select = page.locator(".jp-Cell-outputArea select").last
    select.wait_for(state="visible", timeout=10_000)
    options = select.locator("option")
    texts = options.all_inner_texts()
    assert len(texts) == 1 and "duration-prediction" in texts[0], f"runs listed: {texts}"
    return select
