"""The notebook loop in JupyterLab, timed in a real browser (headless Chromium, Playwright).

1. Badge refresh: a 200-cell notebook (100 tasks) is open; one cell is edited as typing does
   (its shared model) and the time until that cell's badge shows the edit is taken in the
   page (``performance.now()``, a MutationObserver). It includes the extension's 120 ms
   debounce, the request, the server's analysis of the whole unsaved notebook and the
   repaint. Two servers in the same run, their samples interleaved (so both see the same
   load): one remembering the cells' analysis between requests (only the edited cell is
   analysed again: what nb2flow does), one with ``NB2FLOW_ANALYSIS_MEMO=off`` (every cell
   analysed again: the figure before). Baselines: a bare request to the server
   (``/api/status``) from the page, and the server-side analysis time the endpoint reports.
   Target: < 300 ms.
2. "Run as flow" on the example (``notebooks/duration-prediction.ipynb``, its data written
   beside it): from the click to the first task node shown Running in the live panel, once
   with a fresh kernel (the flow's module imports pandas, xgboost, mlflow...) and once warm.
   The second click follows an unsaved edit of the parameters cell (``max_depth``): loading
   and features come from the cache. Baseline: the same kernel running a ``1 + 1`` cell,
   click to output.

    python benchmarks/bench_jupyter.py [--repeat 10] [--screenshots docs]

``--screenshots DIR`` also writes the docs' pictures: the example's badges, the flow plan
side panel and the finished run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import browser_harness as H  # noqa: E402

PANEL = "window.jupyterapp.shell.currentWidget"


def big_notebook(cells: int = 200) -> dict:
    """`cells` code cells: a parameters cell, then tasks of two cells each."""
    src = [H.notebook("n = 10")["cells"][0]]
    src[0]["metadata"] = {"tags": ["parameters"]}
    for i in range(1, cells):
        if i % 2:
            code = f"import math\nv{i} = [math.sqrt(j) for j in range(n)]"
            meta = {"tags": [f"task:step_{i}"]}
        else:
            code = f"w{i} = sum(v{i - 1}) + len(v{i - 1})"
            meta = {}
        src.append({"cell_type": "code", "metadata": meta, "source": code, "outputs": [],
                    "execution_count": None})  # fmt: skip
    nb = H.notebook()
    nb["cells"] = src
    return nb


_EDIT = """
async ([index, name]) => {
  const panel = PANEL;
  const cell = panel.content.widgets[index];
  const badge = cell.node.querySelector('.nb2f-badge');
  const t0 = performance.now();
  const seen = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (badge.innerText.includes(name)) { obs.disconnect(); resolve(performance.now()); }
    });
    setTimeout(() => { obs.disconnect(); resolve(NaN); }, 20000);
    obs.observe(badge, {childList: true, subtree: true, characterData: true});
  });
  cell.model.sharedModel.setSource(cell.model.sharedModel.getSource() + '\\n' + name + ' = 1');
  const t1 = await seen;
  const watcher = [...window.nb2flow.watchers.values()].find(w => w.panel === panel);
  return {ms: t1 - t0, server_ms: watcher.analysis.ms, cpu_ms: watcher.analysis.cpu_ms,
          round_trip: watcher.lastRoundTrip};
}
""".replace("PANEL", PANEL)

_STATUS = """
async () => { const t0 = performance.now();
  await fetch('/api/status', {cache: 'no-store'}); return performance.now() - t0; }
"""

_CLICK_TO_RUNNING = """
async () => {
  const t0 = performance.now();
  const button = [...document.querySelectorAll('.jp-Toolbar .jp-ToolbarButtonComponent')]
    .find(b => b.innerText.includes('Run as flow') && b.offsetParent !== null);
  button.click();
  while (!document.querySelector('.nb2f-panel g.nb2f-node[data-state="Running"]')) {
    if (performance.now() - t0 > 300000) throw new Error('no task Running');
    await new Promise(r => setTimeout(r, 5));
  }
  return performance.now() - t0;
}
"""

_TRIVIAL_CELL = """
async () => {
  const panel = PANEL;
  const m = panel.content.model;
  m.sharedModel.insertCell(m.cells.length, {cell_type: 'code', source: '1 + 1'});
  const cell = panel.content.widgets[m.cells.length - 1];
  panel.content.activeCellIndex = m.cells.length - 1;
  const t0 = performance.now();
  window.jupyterapp.commands.execute('notebook:run-cell');
  while (!cell.node.innerText.includes('2')
         || !cell.node.querySelector('.jp-OutputArea-output')) {
    await new Promise(r => setTimeout(r, 2));
  }
  const ms = performance.now() - t0;
  m.sharedModel.deleteCell(m.cells.length - 1);
  return ms;
}
""".replace("PANEL", PANEL)


def open_alone(page, server, name: str, nb: dict) -> None:
    """Open `nb` as the only notebook (`?reset`: JupyterLab restores no earlier tabs)."""
    H.write_json(server.root / name, nb)
    page.goto(server.notebook_url(name) + "?reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)


def wait_idle(page) -> None:
    page.wait_for_function(
        f"""() => {{ const w = {PANEL}; const k = w && w.sessionContext.session &&
             w.sessionContext.session.kernel;
             return k && k.connectionStatus === 'connected' && k.status === 'idle'; }}""",
        timeout=120_000,
    )


def bench_badges(browser, servers: dict, repeat: int) -> dict:
    """label -> figures, one page per server, the edits alternating between them."""
    pages = {}
    for label, server in servers.items():
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        open_alone(page, server, "big.ipynb", big_notebook())
        page.wait_for_function(
            f"() => Number({PANEL}?.node.dataset.nb2flowAnalysed || 0) > 0", timeout=120_000
        )
        pages[label] = page
    got: dict[str, dict[str, list]] = {label: {} for label in pages}
    for i in range(repeat):
        index = 2 * (i % 50) + 2  # a task's last cell: its badge lists what the task hands on
        for label, page in pages.items():
            page.bring_to_front()
            one = page.evaluate(_EDIT, [index, f"edited_{i}"])
            one["bare"] = page.evaluate(_STATUS)
            for key, value in one.items():
                got[label].setdefault(key, []).append(value)
            time.sleep(0.2)
    for page in pages.values():
        page.close()
    med = statistics.median
    return {
        label: {
            "edit_to_badge_ms": med(g["ms"]),
            "samples": [round(s) for s in g["ms"]],
            "analysis_ms": med(g["server_ms"]),
            "analysis_cpu_ms": med(g["cpu_ms"]),
            "request_round_trip_ms": med(g["round_trip"]),
            "bare_request_ms": med(g["bare"]),
        }
        for label, g in got.items()
    }


def bench_run(page, server, shots: Path | None) -> dict:
    from nb2flow.examples.taxi import write_month

    folder = server.root
    for month in ("2021-01", "2021-02"):
        write_month(folder / "data", month, rows=20_000, seed=0)
    nb = json.loads((ROOT / "notebooks" / "duration-prediction.ipynb").read_text())
    open_alone(page, server, "duration-prediction.ipynb", nb)
    page.wait_for_selector(".nb2f-badge[data-task='load_data']", timeout=60_000)
    wait_idle(page)
    if shots:
        page.evaluate(f"() => {PANEL}.content.scrollToItem(3, 'start')")  # the parameters
        time.sleep(1)
        page.screenshot(path=str(shots / "jupyter-badges.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('nb2flow:show-plan')")
        page.locator("#nb2flow-plan g.nb2f-node").first.wait_for(timeout=20_000)
        page.locator("#nb2flow-plan g.nb2f-node[data-task='features']").click()
        time.sleep(0.5)
        page.screenshot(path=str(shots / "jupyter-plan.png"))
        page.evaluate("() => window.jupyterapp.shell.collapseRight()")
    trivial = [page.evaluate(_TRIVIAL_CELL) for _ in range(5)]
    cold = page.evaluate(_CLICK_TO_RUNNING)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nb2f-panel g.nb2f-node')].length === 4 && "
        "[...document.querySelectorAll('.nb2f-panel g.nb2f-node')].every(g => "
        "['Completed', 'Cached'].includes(g.dataset.state))",
        timeout=300_000,
    )
    wait_idle(page)
    # the loop: edit the parameters cell (unsaved), run again: loading and features Cached
    page.evaluate(
        f"""() => {{ const m = {PANEL}.content.widgets[3].model.sharedModel;
             m.setSource(m.getSource().replace('max_depth = 8', 'max_depth = 6')); }}"""
    )
    time.sleep(0.5)
    warm = page.evaluate(_CLICK_TO_RUNNING)
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('.nb2f-panel g.nb2f-node')]"
        ".map(g => g.dataset.state); return s.length === 4 && s.includes('Cached') && "
        "s.every(x => ['Completed', 'Cached'].includes(x)); }",
        timeout=300_000,
    )
    wait_idle(page)
    if shots:
        cell = page.locator(".jp-Notebook .jp-Cell").last
        cell.scroll_into_view_if_needed()
        time.sleep(1)
        cell.screenshot(path=str(shots / "jupyter-run.png"))
    return {
        "click_to_first_running_cold_ms": cold,
        "click_to_first_running_warm_ms": warm,
        "trivial_cell_ms": statistics.median(trivial),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--only", choices=("badges", "run"), help="one of the two measurements")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nb2flow-bench-jupyter-"))
    servers = {}
    try:
        for label, memo in (("edited cells", "on"), ("every cell", "off")):
            if label == "every cell" and args.only == "run":
                continue
            (tmp / memo).mkdir()
            env = {"MPLBACKEND": "Agg", "NB2FLOW_ANALYSIS_MEMO": memo}
            servers[label] = H.JupyterServer(tmp / memo, "lab", env)
        for server in servers.values():
            server.wait_ready()
        pw, browser = H.open_browser(args.chromium)
        try:
            badges = run = None
            if args.only != "run":
                print("badges: 200-cell notebook ...", file=sys.stderr, flush=True)
                badges = bench_badges(browser, servers, args.repeat)
            if args.only != "badges":
                print("run: the example ...", file=sys.stderr, flush=True)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                run = bench_run(page, servers["edited cells"], args.screenshots)
        finally:
            browser.close()
            pw.stop()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if badges is not None:
        report_badges(badges, args.repeat)
    if run is not None:
        report_run(run)
    return 0


def report_badges(figures: dict, repeat: int) -> None:
    import os

    print("badge refresh after an edit, 200-cell notebook (100 tasks), median of", repeat)
    for label, b in figures.items():
        print(f"  {label} analysed again:")
        print(f"    edit -> badge updated     {b['edit_to_badge_ms']:7.0f} ms   (target < 300 ms)")
        print(f"      of which: debounce 120 ms, request round trip {b['request_round_trip_ms']:.0f} ms"
              f" (server analysis {b['analysis_ms']:.0f} ms wall, {b['analysis_cpu_ms']:.0f} ms CPU)")  # fmt: skip
        print(f"      baseline: bare request to the server {b['bare_request_ms']:.1f} ms"
              f" -> edit/bare = {b['edit_to_badge_ms'] / b['bare_request_ms']:.0f}x")  # fmt: skip
        print(f"      samples: {b['samples']}")
    if len(figures) == 2:
        after, before = figures["edited cells"], figures["every cell"]
        print(f"  edited cells / every cell: edit -> badge "
              f"{after['edit_to_badge_ms'] / before['edit_to_badge_ms']:.2f}x, analysis CPU "
              f"{after['analysis_cpu_ms'] / before['analysis_cpu_ms']:.2f}x")  # fmt: skip
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def report_run(r: dict) -> None:
    print("'Run as flow' on the example: click -> first task Running")
    print(
        f"  fresh kernel (imports the flow's libraries)  {r['click_to_first_running_cold_ms']:7.0f} ms"
    )
    print(
        f"  warm (second click, after an edit)           {r['click_to_first_running_warm_ms']:7.0f} ms"
    )
    print(f"  baseline: a `1 + 1` cell, click -> output    {r['trivial_cell_ms']:7.0f} ms"
          f" -> warm/baseline = {r['click_to_first_running_warm_ms'] / r['trivial_cell_ms']:.1f}x")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
