"""The panel and the report in a real browser: JupyterLab 4 on 127.0.0.1 driven by headless
Chromium through Playwright; a notebook runs a flow with one failing task and the rendered
page is inspected. The report is opened as a file:// page."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import require

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
#: what JupyterLab / ipywidgets show when a widget view cannot be made
WIDGET_FAILURES = [
    "Error displaying widget",
    "Loading widget...",
    "No renderer could be found",
    "Failed to load model class",
]

FLOW_CELL = """\
import time
from nb2flow import flow, get_run_logger, task
from nb2flow.runtime.api import unmapped

@task
def load_data(path: str):
    get_run_logger().info(f"reading {path} <b>as text</b>")
    time.sleep(0.15)
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
#: set to a folder (e.g. docs) to keep the screenshots there too
DOCS_DIR = os.environ.get("NB2FLOW_SCREENSHOTS")


def notebook() -> dict:
    cells = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": source,
            "outputs": [],
            "execution_count": None,
        }
        for source in (FLOW_CELL, "from nb2flow.jupyter import runs\nruns()")
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


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings" / "@jupyterlab"
        # every cell rendered (no virtual scrolling), no news/update toasts over the page
        write_json(
            settings / "notebook-extension" / "tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        write_json(
            settings / "apputils-extension" / "notification.jupyterlab-settings",
            {"checkForUpdates": False, "fetchNews": "false", "doNotDisturbMode": True},
        )
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_DATA_DIR=str(tmp / "data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
            IPYTHONDIR=str(tmp / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            NB2FLOW_HOME=str(tmp / "home"),
            NB2FLOW_PANEL="on",
        )
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            "--IdentityProvider.token=",
            "--PasswordIdentityProvider.hashed_password=",
            "--ServerApp.allow_root=True",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.user_settings_dir={tmp / 'settings'}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--ServerApp.terminals_enabled=False",
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

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/api", timeout=1) as r:
                    json.load(r)
                    return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise TimeoutError(f"jupyter lab did not answer: {self.log_tail()}")

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    for module in ("jupyterlab", "playwright", "ipywidgets"):  # skipped here, failed in CI
        require("browser", importlib.util.find_spec(module) is not None, f"no {module}")
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- in the page

RUN_ALL = r"""
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
  app.shell.collapseLeft(); app.shell.collapseRight();
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


def open_browser(chromium_path: str, tmp: Path):
    require("browser", importlib.util.find_spec("playwright") is not None, "no playwright")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
    return pw, browser


def node_states(page, root: str) -> dict[str, str]:
    return page.evaluate(
        """(root) => Object.fromEntries([...document.querySelectorAll(root + ' g.nb2f-node')]
             .map(g => [g.dataset.task, g.dataset.state]))""",
        root,
    )


def test_panel_renders_live_run_in_jupyterlab(lab: Lab, chromium_path: str, tmp_path: Path):
    name = "panel.ipynb"
    write_json(lab.root / name, notebook())
    pw, browser = open_browser(chromium_path, tmp_path)
    console: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(f"{lab.url}/lab/tree/{urllib.parse.quote(name)}", wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        result = page.evaluate(RUN_ALL, {"timeoutMs": 90_000})
        seen = result.pop("seen")
        assert result == {"executed": 2, "errors": []}, (result, lab.log_tail())
        assert "Running" in seen, seen  # the panel updated while the cell was running

        panel = page.locator(".nb2f-panel").first
        panel.wait_for(state="visible", timeout=20_000)
        # the thread's final render lands shortly after the cell ends
        want = EXPECTED
        page.wait_for_function(
            """(want) => { const got = Object.fromEntries(
                 [...document.querySelectorAll('.nb2f-panel g.nb2f-node')]
                 .map(g => [g.dataset.task, g.dataset.state]));
               return Object.entries(want).every(([k, v]) => got[k] === v); }""",
            arg=want,
            timeout=20_000,
        )
        states = node_states(page, ".nb2f-panel")
        assert {k: states.get(k) for k in want} == want
        head = panel.locator(".nb2f-head")
        assert "Failed" in head.inner_text()
        assert ERROR_TEXT in panel.locator(".nb2f-error").inner_text()  # visible without clicks
        assert panel.locator("svg.nb2f-graph").is_visible()

        # the tasks tab shows the error next to the failed task, the logs tab its traceback
        panel.locator(".lm-TabBar-tab", has_text="Tasks").click()
        failed_row = panel.locator('tr.nb2f-tr[data-state="Failed"]')
        failed_row.wait_for(state="visible", timeout=10_000)
        assert ERROR_TEXT in failed_row.inner_text()
        panel.locator(".lm-TabBar-tab", has_text="Logs").click()
        logs = panel.locator(".nb2f-logs")
        logs.wait_for(state="visible", timeout=10_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.nb2f-logs')].some(e => "
            "e.innerText.includes('Traceback'))",
            timeout=10_000,
        )
        assert ERROR_TEXT in logs.inner_text()
        panel.locator(".lm-TabBar-tab", has_text="Timeline").click()
        page.wait_for_function(
            "() => document.querySelector('.nb2f-panel svg.nb2f-timeline rect.nb2f-bar')",
            timeout=10_000,
        )
        if DOCS_DIR:
            panel.screenshot(path=str(Path(DOCS_DIR) / "panel-timeline.png"))

        outputs = "\n".join(page.locator(".jp-Cell-outputArea").all_inner_texts())
        for text in WIDGET_FAILURES:
            assert text not in outputs
        assert page.locator(".jupyter-widgets-error-widget").count() == 0
        panel.locator(".lm-TabBar-tab", has_text="Graph").click()
        shot = tmp_path / "panel.png"
        panel.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if DOCS_DIR:
            panel.screenshot(path=str(Path(DOCS_DIR) / "panel.png"))

        # the run browser of the second cell lists the run; picking it shows its panel
        select = page.locator(".jp-Cell-outputArea select").last
        select.wait_for(state="visible", timeout=10_000)
        options = select.locator("option")
        assert options.count() == 1 and "duration-prediction" in options.first.inner_text()
        select.select_option(index=0)
        stored = page.locator(".nb2f-panel").nth(1)
        stored.wait_for(state="visible", timeout=20_000)
        stored.locator('g.nb2f-node[data-state="Failed"]').wait_for(timeout=10_000)
        assert ERROR_TEXT in stored.locator(".nb2f-error").inner_text()
        browser_out = page.locator(".jp-Cell-outputArea").last
        page.set_viewport_size({"width": 1280, "height": 1700})  # room for the whole output
        browser_out.screenshot(path=str(tmp_path / "runs.png"))
        if DOCS_DIR:
            browser_out.screenshot(path=str(Path(DOCS_DIR) / "runs.png"))

        # under a dark theme the panel keeps its own colours: dark text on white
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'})")  # fmt: skip
        page.wait_for_function(
            "() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000
        )
        colours = page.evaluate(
            """() => { const c = (sel, p) => getComputedStyle(
                 document.querySelector('.nb2f-panel ' + sel))[p];
               return [c('.nb2f-flow', 'color'), c('.nb2f-counts', 'color'),
                       c('.widget-tab-contents', 'backgroundColor'),
                       getComputedStyle(document.querySelector('.nb2f-panel')).backgroundColor,
                       c('.widget-label', 'color')]; }"""
        )
        dark, white = "rgb(17, 24, 39)", "rgb(255, 255, 255)"
        assert colours == [dark, dark, white, white, dark]
    except BaseException:
        # what the page looked like, and what the server said, for whoever reads the failure
        try:
            page.screenshot(path=str(tmp_path / "failure.png"))
        except Exception:  # noqa: BLE001
            pass
        print(f"screenshot: {tmp_path / 'failure.png'}\nserver log:\n{lab.log_tail()}")
        print("console errors:", console[:10])
        raise
    finally:
        browser.close()
        pw.stop()


def test_report_opens_as_a_file(tmp_path: Path, chromium_path: str):
    from nb2flow import cli

    # the notebook's flow, run here without a kernel, recorded by the runtime's store hook
    ns: dict = {}
    exec(FLOW_CELL, ns)  # noqa: S102
    run_id = ns["state"].id
    out = tmp_path / "run.html"
    assert cli.main(["report", run_id, "-o", str(out)]) == 0

    pw, browser = open_browser(chromium_path, tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        states = node_states(page, "#graph")
        assert states["evaluate"] == "Failed" and states["register_model"] == "NotRun"
        assert states["train"] == "Completed" and len(states) == 8
        assert ERROR_TEXT in page.locator("#header").inner_text()
        row = page.locator('#tasks tr[data-state="Failed"]')
        assert row.is_visible() and ERROR_TEXT in row.inner_text()
        assert "Traceback" in page.locator("#logs").inner_text()
        # the log filter works offline (inline script)
        page.select_option("#log-level", "40")
        assert page.locator("#logs .nb2f-log", has_text="dropped").count() == 1
        assert not page.locator("#logs .nb2f-log", has_text="dropped").is_visible()
        errors = page.locator('#logs .nb2f-log[data-level="ERROR"]', has_text="Traceback")
        assert errors.count() == 1 and errors.is_visible() and ERROR_TEXT in errors.inner_text()
        assert requests == [out.as_uri()]  # nothing else was fetched
        page.select_option("#log-level", "0")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
        if DOCS_DIR:
            page.screenshot(path=str(Path(DOCS_DIR) / "report.png"), full_page=True)
    finally:
        browser.close()
        pw.stop()
