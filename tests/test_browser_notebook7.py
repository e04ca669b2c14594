"""The panel in Jupyter Notebook 7 (not JupyterLab): `python -m notebook` on 127.0.0.1, the flow
notebook opened in headless Chromium through Playwright, every cell run with Notebook 7's own
`notebook:run-all-cells` command, and the rendered page inspected."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_harness import (
    ERROR_TEXT,
    EXPECTED,
    FLOW_CELL,
    RUNS_CELL,
    JupyterServer,
    browser_page,
    jupyter_server,
    node_states,
    notebook,
    open_notebook,
    run_all_cells,
    wait_for_states,
    widget_errors,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def nb7(tmp_path_factory: pytest.TempPathFactory):
    with jupyter_server(tmp_path_factory.mktemp("notebook7"), "notebook") as server:
        yield server


def test_panel_renders_in_notebook7(nb7: JupyterServer, chromium_path: str, tmp_path: Path):
    with browser_page(chromium_path, tmp_path, nb7) as page:
        open_notebook(page, nb7, "panel.ipynb", notebook(FLOW_CELL, RUNS_CELL))
        # the page really is Notebook 7's, not JupyterLab's
        assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
        result = run_all_cells(page, timeout_ms=30_000)
        seen = result.pop("seen")
        assert result == {"executed": 2, "errors": []}, (result, nb7.log_tail())
        panel = page.locator(".nb2f-panel").first
        panel.wait_for(state="visible", timeout=10_000)
        assert "Running" in seen, seen  # the panel updated while the cell was running
        wait_for_states(page, EXPECTED, timeout_ms=10_000)
        states = node_states(page, ".nb2f-panel")
        assert {k: states.get(k) for k in EXPECTED} == EXPECTED
        assert panel.locator("svg.nb2f-graph").is_visible()
        assert "Failed" in panel.locator(".nb2f-head").inner_text()
        error = panel.locator(".nb2f-error")
        assert error.is_visible() and ERROR_TEXT in error.inner_text()  # without any click

        # the widgets' tabs work in Notebook 7: the failed row in Tasks, the traceback in Logs
        panel.locator(".lm-TabBar-tab", has_text="Tasks").click()
        failed_row = panel.locator('tr.nb2f-tr[data-state="Failed"]')
        failed_row.wait_for(state="visible", timeout=10_000)
        assert ERROR_TEXT in failed_row.inner_text()
        panel.locator(".lm-TabBar-tab", has_text="Logs").click()
        logs = panel.locator(".nb2f-logs")
        logs.wait_for(state="visible", timeout=10_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.nb2f-panel .nb2f-logs')].some(e => "
            "e.innerText.includes('Traceback'))",
            timeout=10_000,
        )
        assert ERROR_TEXT in logs.inner_text()

        # the run browser (Select, Dropdown) of the second cell lists the run
        select = page.locator(".jp-Cell-outputArea select").last
        select.wait_for(state="visible", timeout=10_000)
        options = select.locator("option")
        assert options.count() == 1 and "duration-prediction" in options.first.inner_text()

        assert widget_errors(page) == []
        panel.locator(".lm-TabBar-tab", has_text="Graph").click()
        panel.locator("svg.nb2f-graph").wait_for(state="visible", timeout=10_000)
        shot = tmp_path / "panel-notebook7.png"
        panel.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.screenshot(path=str(tmp_path / "notebook7.png"))  # the page as a user sees it
