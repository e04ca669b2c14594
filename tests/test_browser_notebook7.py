"""The panel in Jupyter Notebook 7 (not JupyterLab): `python -m notebook` on 127.0.0.1, the flow
notebook opened in headless Chromium through Playwright, every cell run with Notebook 7's own
`notebook:run-all-cells` command, and the rendered page inspected."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_harness import (
    FLOW_CELL,
    RUNS_CELL,
    JupyterServer,
    browser_page,
    check_error_tabs,
    check_final_panel,
    check_runs_listed,
    click_tab,
    jupyter_server,
    notebook,
    open_notebook,
    run_all_cells,
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
        page.locator(".nb2f-panel").first.wait_for(state="visible", timeout=10_000)
        assert "Running" in seen, seen  # the panel updated while the cell was running

        panel = check_final_panel(page)
        check_error_tabs(page, panel)  # the final panel's tabs work in Notebook 7 too
        check_runs_listed(page)  # Select and Dropdown widgets of the run browser
        assert widget_errors(page) == []

        click_tab(panel, "Graph")
        panel.locator("svg.nb2f-graph").wait_for(state="visible", timeout=10_000)
        shot = tmp_path / "panel-notebook7.png"
        panel.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.screenshot(path=str(tmp_path / "notebook7.png"))  # the page as a user sees it
