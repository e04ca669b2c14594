"""The panel and the report in a real browser: JupyterLab 4 on 127.0.0.1 driven by headless
Chromium through Playwright; a notebook runs a flow with one failing task and the rendered
page is inspected. The report is opened as a file:// page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_harness import (
    ERROR_TEXT,
    FLOW_CELL,
    RUNS_CELL,
    JupyterServer,
    browser_page,
    check_error_tabs,
    check_final_panel,
    check_runs_listed,
    click_tab,
    jupyter_server,
    node_states,
    notebook,
    open_notebook,
    run_all_cells,
    widget_errors,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: set to a folder (e.g. docs) to keep the screenshots there too
DOCS_DIR = os.environ.get("NB2FLOW_SCREENSHOTS")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with jupyter_server(tmp_path_factory.mktemp("lab"), "lab") as server:
        yield server


def test_panel_renders_live_run_in_jupyterlab(
    lab: JupyterServer, chromium_path: str, tmp_path: Path
):
    with browser_page(chromium_path, tmp_path, lab) as page:
        open_notebook(page, lab, "panel.ipynb", notebook(FLOW_CELL, RUNS_CELL))
        result = run_all_cells(page)
        seen = result.pop("seen")
        assert result == {"executed": 2, "errors": []}, (result, lab.log_tail())
        assert "Running" in seen, seen  # the panel updated while the cell was running

        panel = check_final_panel(page)
        check_error_tabs(page, panel)
        click_tab(panel, "Timeline")
        page.wait_for_function(
            "() => document.querySelector('.nb2f-panel svg.nb2f-timeline rect.nb2f-bar')",
            timeout=10_000,
        )
        if DOCS_DIR:
            panel.screenshot(path=str(Path(DOCS_DIR) / "panel-timeline.png"))

        assert widget_errors(page) == []
        click_tab(panel, "Graph")
        page.set_viewport_size({"width": 1280, "height": 1400})  # room for the whole panel
        shot = tmp_path / "panel.png"
        panel.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if DOCS_DIR:
            panel.screenshot(path=str(Path(DOCS_DIR) / "panel.png"))

        # the run browser of the second cell lists the run; picking it shows its panel
        select = check_runs_listed(page)
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


def test_report_opens_as_a_file(tmp_path: Path, chromium_path: str):
    from nb2flow import cli

    # the notebook's flow, run here without a kernel, recorded by the runtime's store hook
    ns: dict = {}
    exec(FLOW_CELL, ns)  # noqa: S102
    run_id = ns["state"].id
    out = tmp_path / "run.html"
    assert cli.main(["report", run_id, "-o", str(out)]) == 0

    with browser_page(chromium_path, tmp_path, viewport={"width": 1200, "height": 900}) as page:
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
        # the log filter works offline, with no script at all (CSS)
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
