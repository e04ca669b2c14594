"""The run record in a real JupyterLab (headless Chromium, 1280 px): every tab of the panel is
live while the flow runs, the Outputs tab shows a figure and a displayed DataFrame, edge labels
stay clear of nodes and arrowheads, and after a real save, kernel shutdown and reopen the
notebook shows the final panel."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from browser_harness import (
    JupyterServer,
    browser_page,
    click_tab,
    jupyter_server,
    notebook,
    open_notebook,
    widget_errors,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_DIR = os.environ.get("NB2FLOW_SCREENSHOTS")

RECORD_CELL = """\
import time
from nb2flow import artifacts, flow, task

@task(nout=6)
def features(rows: int):
    print(f"building features from {rows} rows")
    return list(range(rows)), [1.0] * rows, [2], [3.0], "dv", [{"PU_DO": "1_2"}]

@task
def score(part: int) -> int:
    return part * part

@task
def slow_train(X_train, y_train, X_val, y_val, dv, train_dicts, parts) -> float:
    import matplotlib.pyplot as plt
    for epoch in range(14):
        print(f"epoch {epoch}")
        time.sleep(0.5)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(len(X_train)), y_train)
    ax.set_title("training curve")
    return 6.25

@task
def summarize(rmse: float) -> float:
    import pandas as pd
    artifacts.display(pd.DataFrame({"metric": ["rmse"], "value": [rmse]}))
    return rmse

@task
def report(best_rmse: float) -> str:
    return f"rmse {best_rmse}"

@task
def publish(text: str) -> str:
    return text.upper()

@flow(name="record-check")
def main(rows: int = 5) -> dict:
    X_train, y_train, X_val, y_val, dv, train_dicts = features.submit(rows)
    parts = score.map(range(9))  # ten tasks side by side: wider than the screen
    rmse = slow_train.submit(X_train, y_train, X_val, y_val, dv, train_dicts, parts)
    return {"rmse": summarize.submit(rmse), "text": publish.submit(report.submit(rmse))}

result = main()
"""

_START = """async () => {
  const app = window.jupyterapp;
  await app.restored;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let panel = null;
  for (let i = 0; i < 2000 && !panel; i++) { const w = app.shell.currentWidget;
    if (w && w.sessionContext && w.content && w.content.widgets) panel = w; else await sleep(25); }
  await panel.context.ready;
  await panel.sessionContext.ready;
  for (let i = 0; i < 4000; i++) { const k = panel.sessionContext.session &&
      panel.sessionContext.session.kernel;
    if (k && k.connectionStatus === 'connected' && k.status === 'idle') break; await sleep(25); }
  if (app.shell.collapseLeft) app.shell.collapseLeft();
  window.__nb2f_ran = false;
  app.commands.execute('notebook:run-all-cells').then(() => { window.__nb2f_ran = true; });
}"""


def _running(page) -> bool:
    """The cell is still executing (the front end's run command has not returned)."""
    return page.evaluate("() => window.__nb2f_ran") is False


def _bar_seconds(panel) -> float:
    """How long the running task's bar lasts (it reaches the time axis's end: now)."""
    bar = panel.locator('svg.nb2f-timeline rect.nb2f-bar[data-state="Running"]').first
    return float(bar.get_attribute("data-seconds"))


def _duration(panel) -> str:
    row = panel.locator('tr.nb2f-tr[data-task="slow_train"]')
    return row.locator("td").nth(3).inner_text()


def _labels_clear(page, root: str) -> dict:
    """Every edge label's box against every node's box, every arrowhead (path end), every
    other label and every edge (points every 2 px along each drawn path, as laid out by the
    browser); every edge against the nodes it does not start or end at."""
    return page.evaluate(
        """(root) => {
          const svg = document.querySelector(root + ' svg.nb2f-graph');
          const boxes = [...svg.querySelectorAll('g.nb2f-node rect')].map(r => r.getBBox());
          const heads = [...svg.querySelectorAll('g.nb2f-edge path')].map(p => {
            const e = p.getPointAtLength(p.getTotalLength()); return {x: e.x - 7, y: e.y - 7,
              width: 14, height: 14}; });
          const hit = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width &&
                                a.y < b.y + b.height && b.y < a.y + a.height;
          const labels = [...svg.querySelectorAll('text.nb2f-edge-label')];
          const bad = [];
          for (const t of labels) { const b = t.getBBox();
            if (boxes.some(n => hit(b, n)) || heads.some(h => hit(b, h))) bad.push(t.textContent); }
          const lb = labels.map(t => t.getBBox());
          const overlaps = [];  // labels against each other
          lb.forEach((a, i) => lb.slice(i + 1).forEach((b, j) => { if (hit(a, b))
            overlaps.push([labels[i].textContent, labels[i + 1 + j].textContent]); }));
          const inside = (p, b) => b.x < p.x && p.x < b.x + b.width && b.y < p.y &&
                                   p.y < b.y + b.height;
          const crossed = [];  // [edge, what it passes through]
          for (const g of svg.querySelectorAll('g.nb2f-edge')) {
            const path = g.querySelector('path'), total = path.getTotalLength();
            const name = g.dataset.src + '->' + g.dataset.dst;
            const others = [...svg.querySelectorAll('g.nb2f-node')].filter(n =>
              n.dataset.id !== g.dataset.src && n.dataset.id !== g.dataset.dst);
            for (let at = 0; at <= total; at += 2) {
              const p = path.getPointAtLength(at);
              labels.forEach((t, i) => { if (inside(p, lb[i])) crossed.push([name, t.textContent]); });
              others.forEach(n => { if (inside(p, n.querySelector('rect').getBBox()))
                crossed.push([name, n.dataset.task]); });
            }
          }
          const scroller = svg.closest('.nb2f-scroll');
          return {labels: labels.length, bad, overlaps, crossed,
                  lines: labels.map(t => t.children.length),
                  svgWidth: svg.getBoundingClientRect().width,
                  scrollable: scroller.scrollWidth > scroller.clientWidth,
                  overflow: getComputedStyle(scroller).overflowX,
                  visibleWidth: scroller.getBoundingClientRect().width}; }""",
        root,
    )


def _misaligned(panel) -> list[str]:
    """The header and cells of the panel's tables (every tab's) that are not left-aligned."""
    return panel.evaluate(
        """(p) => [...p.querySelectorAll('table.nb2f-table th, table.nb2f-table td')]
             .filter(c => getComputedStyle(c).textAlign !== 'left')
             .map(c => c.closest('table').className + ': ' + c.innerText.slice(0, 30))"""
    )


def _kernel_ids(server: JupyterServer) -> list[str]:
    with urllib.request.urlopen(server.url + "/api/kernels", timeout=10) as r:
        return [k["id"] for k in json.load(r)]


def _shutdown_kernels(page, server: JupyterServer) -> None:
    """Shut every kernel down through the front end's own services, and check it is done."""
    page.evaluate("() => window.jupyterapp.serviceManager.sessions.shutdownAll()")
    deadline = time.monotonic() + 30
    while _kernel_ids(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _kernel_ids(server)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with jupyter_server(tmp_path_factory.mktemp("record-lab"), "lab") as server:
        yield server


def test_live_tabs_outputs_and_the_saved_panel(lab: JupyterServer, chromium_path: str, tmp_path):
    with browser_page(
        chromium_path, tmp_path, lab, viewport={"width": 1280, "height": 1000}
    ) as page:
        open_notebook(page, lab, "record.ipynb", notebook(RECORD_CELL))
        page.evaluate(_START)
        live = page.locator(".nb2f-panel").first
        live.locator('g.nb2f-node[data-task="slow_train"][data-state="Running"]').wait_for(
            timeout=60_000
        )
        assert _running(page)

        # Timeline: the running task's bar grows while the kernel is busy with the flow
        click_tab(live, "Timeline")
        live.locator('svg.nb2f-timeline rect.nb2f-bar[data-state="Running"]').first.wait_for(
            timeout=10_000
        )
        first = _bar_seconds(live)
        page.wait_for_timeout(1600)
        assert _running(page) and _bar_seconds(live) > first + 0.5
        if DOCS_DIR:
            live.screenshot(path=str(Path(DOCS_DIR) / "panel-live-timeline.png"))

        # Tasks: the running task's duration ticks
        click_tab(live, "Tasks")
        assert _misaligned(live) == []
        before = _duration(live)
        page.wait_for_timeout(1300)
        assert _running(page) and _duration(live) != before, before
        assert "Running" in live.locator('tr.nb2f-tr[data-task="slow_train"]').inner_text()

        # Logs: the task's prints stream in while it runs, and the CSS filter works meanwhile
        click_tab(live, "Logs")
        live.locator(".nb2f-log", has_text="epoch 0").wait_for(timeout=10_000)
        live.locator(".nb2f-log", has_text="epoch 4").wait_for(timeout=10_000)
        assert _running(page)
        level = live.locator("select[id$='-log-level']")
        level.select_option("30")
        assert not live.locator(".nb2f-log", has_text="epoch 0").is_visible()
        level.select_option("0")
        assert live.locator(".nb2f-log", has_text="epoch 0").is_visible()
        if DOCS_DIR:
            live.screenshot(path=str(Path(DOCS_DIR) / "panel-live-logs.png"))

        # the end: the output becomes the static final panel
        page.wait_for_function("() => window.__nb2f_ran === true", timeout=90_000)
        final = page.locator(".nb2f-panel.nb2f-static").first
        final.wait_for(timeout=20_000)
        assert "Completed" in final.locator(".nb2f-head").inner_text()
        ident = final.locator(".nb2f-ident").inner_text()
        assert "started 20" in ident and "ended" in ident and "run " in ident
        click_tab(final, "Outputs")
        img = final.locator("img.nb2f-img")
        img.wait_for(timeout=10_000)
        assert page.evaluate("(i) => i.naturalWidth", img.element_handle()) > 100
        assert "rmse" in final.locator(".nb2f-art-html table").inner_text()
        assert "6.25" in final.locator(".nb2f-results").inner_text()
        # task names (and results) left-aligned, as in the Tasks tab, in JupyterLab's
        # rendered HTML too (which right-aligns table cells)
        assert final.locator(".nb2f-results td").count() >= 28
        assert _misaligned(final) == []
        if DOCS_DIR:
            final.screenshot(path=str(Path(DOCS_DIR) / "panel-outputs.png"))

        # the graph at 1280 px: labels clear of nodes and arrowheads, a wide graph scrolls
        click_tab(final, "Graph")
        geometry = _labels_clear(page, ".nb2f-panel.nb2f-static")
        assert geometry["labels"] >= 2 and geometry["bad"] == [], geometry
        assert geometry["overlaps"] == [], geometry
        assert geometry["crossed"] == [], geometry  # no edge through a label or a node
        assert max(geometry["lines"]) >= 2  # six names wrap, the full list is the tooltip
        assert geometry["overflow"] == "auto"
        assert geometry["svgWidth"] > geometry["visibleWidth"] and geometry["scrollable"]
        if DOCS_DIR:
            final.screenshot(path=str(Path(DOCS_DIR) / "panel-wide-graph.png"))
        assert widget_errors(page) == []

        # a real save, the kernel shut down, the notebook opened again
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function(
            "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=20_000
        )
        saved = json.loads((lab.root / "record.ipynb").read_text())
        (bundle,) = [o["data"] for o in saved["cells"][0]["outputs"] if "data" in o]
        html = bundle["text/html"]
        assert "nb2f-static" in ("".join(html) if isinstance(html, list) else html)
        assert "application/vnd.jupyter.widget-view+json" not in bundle
        _shutdown_kernels(page, lab)
        page.goto(lab.notebook_url("record.ipynb"), wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        reopened = page.locator(".nb2f-panel.nb2f-static").first
        reopened.wait_for(timeout=60_000)
        assert "Completed" in reopened.locator(".nb2f-head").inner_text()
        states = reopened.evaluate(
            "(p) => Object.fromEntries([...p.querySelectorAll('g.nb2f-node')]"
            ".map(g => [g.dataset.task, g.dataset.state]))"
        )
        assert states["slow_train"] == "Completed" and states["summarize"] == "Completed"
        click_tab(reopened, "Outputs")
        reopened.locator("img.nb2f-img").wait_for(timeout=10_000)
        click_tab(reopened, "Logs")
        assert reopened.locator(".nb2f-log", has_text="epoch 13").is_visible()
        assert widget_errors(page) == []
        if DOCS_DIR:
            reopened.screenshot(path=str(Path(DOCS_DIR) / "panel-reopened.png"))
