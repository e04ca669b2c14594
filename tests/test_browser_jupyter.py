"""The nb2flow JupyterLab 4 / Notebook 7 extension in a real browser (headless Chromium,
Playwright), one server per front end for the module: per-cell badges, a tag added through
the extension's control updating the badge and the flow plan without saving, a literal made
a flow parameter from the same form (undo takes it back; a taken name is refused naming the
cell), a malformed tag shown on its cell, "Run as flow" reaching Completed for every task in
the live panel, an edit re-running only its task and what follows (the rest Cached), and
``%nb2flow run`` typed in a cell doing the same with the notebook's unsaved content."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from browser_harness import (
    JupyterServer,
    browser_page,
    jupyter_server,
    notebook,
    widget_errors,
    write_json,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_DIR = os.environ.get("NB2FLOW_SCREENSHOTS")

WRITE = 'total = sum(xs){}\nwith open("result.txt", "w") as f:\n    f.write(str(total))'


def cell(source: str, *tags: str) -> dict[str, Any]:
    meta = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "metadata": meta, "source": source, "outputs": [],
            "execution_count": None}  # fmt: skip


def loop_notebook() -> dict[str, Any]:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# The loop"},
        cell("import time"),
        cell("n = 4", "parameters"),
        cell("time.sleep(0.3)\nxs = list(range(n))", "task:make", "cache"),
        cell(WRITE.format(""), "task:write", "cache"),
        cell("print(total)"),
    ]
    nb = notebook()
    nb["cells"] = cells
    return nb


@pytest.fixture(scope="module", params=["lab", "notebook"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    with jupyter_server(tmp_path_factory.mktemp(request.param), request.param) as s:
        yield s


# --------------------------------------------------------------------------- page helpers

_PANEL = "(() => { const w = window.jupyterapp.shell.currentWidget; return w; })()"


def badges(page: Any) -> list[dict[str, str]]:
    """role, task and text of every code cell's badge, in cell order."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(c => {
             const b = c.querySelector('.nb2f-badge');
             return b ? {role: b.dataset.role, task: b.dataset.task || '',
                         text: b.innerText.replace(/\\s+/g, ' ').trim()} : null; })"""
    )


def wait_analysed(page: Any, after: int) -> int:
    """Wait until the notebook was analysed more than `after` times; the count."""
    page.wait_for_function(
        f"(n) => {{ const w = {_PANEL}; return w && Number(w.node.dataset.nb2flowAnalysed) > n; }}",
        arg=after,
        timeout=30_000,
    )
    return page.evaluate(f"() => Number({_PANEL}.node.dataset.nb2flowAnalysed)")


def apply(page: Any, dialog: Any, before: int, shown: str) -> None:
    """Click the dialog's Apply, wait for the analysis that follows and for `shown` (a JS
    expression) to be true on the page."""
    dialog.locator(".jp-mod-accept").click()
    wait_analysed(page, before)
    page.wait_for_function(f"() => {shown}", timeout=20_000)


def analysed(page: Any) -> int:
    return page.evaluate(f"() => Number({_PANEL}.node.dataset.nb2flowAnalysed || 0)")


def cell_states(page: Any, index: int) -> dict[str, str]:
    """task -> state shown by the live panel in the output of code cell `index` (0-based
    among all cells)."""
    return page.evaluate(
        """(i) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
             return c ? Object.fromEntries([...c.querySelectorAll('.nb2f-panel g.nb2f-node')]
               .map(g => [g.dataset.task, g.dataset.state])) : {}; }""",
        index,
    )


def wait_cell_states(page: Any, index: int, want: dict[str, str], timeout: int = 120_000) -> None:
    """Wait until the live panel of cell `index` shows `want`; on a timeout, say what the
    cell showed instead (its panel's states and its output text)."""
    try:
        _wait_cell_states(page, index, want, timeout)
    except Exception as exc:
        output = page.evaluate(
            "(i) => document.querySelectorAll('.jp-Notebook .jp-Cell')[i]?.innerText", index
        )
        raise AssertionError(
            f"cell {index}: wanted {want}, the panel shows {cell_states(page, index)}; "
            f"the cell shows:\n{output}"
        ) from exc


def _wait_cell_states(page: Any, index: int, want: dict[str, str], timeout: int) -> None:
    page.wait_for_function(
        """([i, want]) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
             if (!c) return false;
             const got = Object.fromEntries([...c.querySelectorAll('.nb2f-panel g.nb2f-node')]
               .map(g => [g.dataset.task, g.dataset.state]));
             return Object.entries(want).every(([k, v]) => got[k] === v); }""",
        arg=[index, want],
        timeout=timeout,
    )


def set_source(page: Any, index: int, source: str) -> None:
    """Edit cell `index` as typing would (the shared model; nothing saved)."""
    page.evaluate(
        f"([i, s]) => {_PANEL}.content.widgets[i].model.sharedModel.setSource(s)",
        [index, source],
    )


def wait_kernel_idle(page: Any) -> None:
    page.wait_for_function(
        f"""() => {{ const w = {_PANEL}; const k = w && w.sessionContext.session &&
               w.sessionContext.session.kernel;
               return k && k.connectionStatus === 'connected' && k.status === 'idle'; }}""",
        timeout=60_000,
    )


def run_button(page: Any) -> Any:
    """The "Run as flow" button of the notebook on screen (others may be open, hidden)."""
    panel = page.evaluate(f"() => {_PANEL}.id")
    return page.locator(f'[id="{panel}"] .jp-Toolbar').get_by_text("Run as flow")


def cell_count(page: Any) -> int:
    return page.evaluate(f"() => {_PANEL}.content.widgets.length")


def dirty(page: Any) -> bool:
    return page.evaluate(f"() => {_PANEL}.context.model.dirty")


def open_alone(page: Any, server: JupyterServer, name: str, nb: dict[str, Any]) -> None:
    """Open `nb` as the only notebook: JupyterLab would otherwise restore the notebooks of
    the module's earlier tests beside it (`?reset` starts from an empty workspace)."""
    write_json(server.root / name, nb)
    reset = "?reset" if server.app == "lab" else ""
    page.goto(server.notebook_url(name) + reset, wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)


def dialog_fits(page: Any) -> dict[str, Any]:
    """The open dialog's box against the window, and whether its body scrolls."""
    return page.evaluate(
        """() => { const c = document.querySelector('.jp-Dialog-content');
             const b = c.querySelector('.jp-Dialog-body'); const r = c.getBoundingClientRect();
             return {scrolls: b.scrollHeight > b.clientHeight || b.scrollWidth > b.clientWidth,
                     inside: r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight &&
                             r.right <= innerWidth,
                     size: [r.width, r.height], body: [b.scrollHeight, b.clientHeight],
                     window: [innerWidth, innerHeight]}; }"""
    )


def chips(dialog: Any) -> list[str]:
    """The flow outputs the tag form lists."""
    return dialog.locator(".nb2f-output-chip").evaluate_all("cs => cs.map(c => c.dataset.name)")


def shot(page: Any, tmp: Path, name: str, locator: Any = None) -> None:
    target = locator if locator is not None else page
    target.screenshot(path=str(tmp / name))
    if DOCS_DIR:
        target.screenshot(path=str(Path(DOCS_DIR) / name))


# --------------------------------------------------------------------------- the tests


def test_badges_tag_controls_plan_and_problems(
    server: JupyterServer, chromium_path: str, tmp_path: Path
):
    # a laptop's window: the tag form fits in JupyterLab's dialog without scrolling
    viewport = {"width": 1280, "height": 800}
    with browser_page(chromium_path, tmp_path, server, viewport=viewport) as page:
        open_alone(page, server, "tags.ipynb", loop_notebook())
        page.wait_for_selector(".nb2f-badge[data-role='task']", timeout=60_000)
        wait_analysed(page, 0)
        # (a) every code cell says what it becomes
        got = badges(page)
        assert [(b["role"], b["task"]) for b in got] == [
            ("module", ""), ("parameters", ""), ("task", "make"), ("task", "write"),
            ("task", "write"),
        ], got  # fmt: skip
        assert got[2]["text"].startswith("task make cache in: n out: xs"), got[2]
        assert "→ n" in got[1]["text"]
        assert "in: xs" in got[3]["text"] and "out: total" in got[4]["text"]

        # a tag added through the extension's control: the last cell becomes task "report"
        before = analysed(page)
        page.locator(".jp-Notebook .jp-CodeCell").nth(4).locator(".nb2f-edit-tags").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("select[name=role]").select_option("task")
        name = dialog.locator("input[name=task-name]")
        name.fill("")
        name.press_sequentially("9 report-now!")  # the control keeps only what is valid
        assert name.input_value() == "reportnow"
        retries = dialog.locator("input[name=retries]")
        retries.fill("-3")
        retries.dispatch_event("change")
        assert retries.input_value() == ""  # not a valid value: nothing is set
        retries.fill("2")
        retries.dispatch_event("change")
        dialog.locator("select[name=after]").select_option("make")
        fits = dialog_fits(page)
        assert fits["inside"] and not fits["scrolls"], fits
        shot(page, tmp_path, "jupyter-tags.png", dialog)
        apply(
            page, dialog, before, "document.querySelector(\".nb2f-badge[data-task='reportnow']\")"
        )
        got = badges(page)
        assert got[4]["role"] == "task" and got[4]["task"] == "reportnow", got
        assert "retries=2 · after make" in got[4]["text"] and "in: total" in got[4]["text"]
        tags = page.evaluate(f"() => {_PANEL}.content.widgets[5].model.getMetadata('tags')")
        assert tags == ["task:reportnow", "retries:2", "after:make"]
        # ... without saving: the file on disk still has the cell untagged
        assert dirty(page)
        on_disk = json.loads((server.root / "tags.ipynb").read_text())
        assert "tags" not in on_disk["cells"][5]["metadata"]

        # a literal of the cell made a flow parameter from the same form, without saving
        before = analysed(page)
        page.locator(".jp-Notebook .jp-CodeCell").nth(3).locator(".nb2f-edit-tags").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("input[name=param-literal]").wait_for(timeout=20_000)  # opened
        offered = dialog.locator("datalist option").evaluate_all("os => os.map(o => o.value)")
        assert offered == ['"result.txt"', '"w"'], offered  # the cell's own, from the server
        dialog.locator("input[name=param-literal]").fill('"result.txt"')
        param = dialog.locator("input[name=param-name]")
        param.press_sequentially("out-file")  # validated as the task name is
        assert param.input_value() == "outfile"
        fits = dialog_fits(page)
        assert fits["inside"] and not fits["scrolls"], fits
        if server.app == "lab":
            shot(page, tmp_path, "jupyter-parameter.png", dialog)
        apply(
            page,
            dialog,
            before,
            "document.querySelectorAll('.nb2f-badge')[1].innerText.includes('outfile')",
        )
        got = badges(page)
        assert "→ n, outfile" in got[1]["text"] and "in: xs, outfile" in got[3]["text"], got
        sources = page.evaluate(
            f"() => {_PANEL}.content.widgets.map(w => w.model.sharedModel.getSource())"
        )
        assert sources[2] == 'n = 4\noutfile = "result.txt"'
        assert sources[4] == WRITE.format("").replace('"result.txt"', "outfile")
        assert cell_count(page) == 6 and dirty(page)  # in the model, not on disk
        on_disk = json.loads((server.root / "tags.ipynb").read_text())
        assert "outfile" not in json.dumps(on_disk)
        # the edit is an ordinary one: the cell's undo takes it back, redo again
        undo = f"(i) => {_PANEL}.content.widgets[i].model.sharedModel.undo()"
        page.evaluate(undo, 4)
        source = f"(i) => {_PANEL}.content.widgets[i].model.sharedModel.getSource()"
        assert page.evaluate(source, 4) == WRITE.format("")
        page.evaluate(f"(i) => {_PANEL}.content.widgets[i].model.sharedModel.redo()", 4)
        assert "outfile" in page.evaluate(source, 4)
        # a name already taken: one line naming the cell, nothing changed
        page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".nb2f-edit-tags").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("input[name=param-literal]").fill("0.3")
        dialog.locator("input[name=param-name]").fill("n")
        dialog.locator(".jp-mod-accept").click()
        error = page.locator(".jp-Dialog .jp-Dialog-body")
        error.wait_for(timeout=20_000)
        assert error.inner_text().strip() == (
            "tags.ipynb, cell 3: 'n' is already a parameter, with default 4"
        )
        page.locator(".jp-Dialog").get_by_role("button", name="Close", exact=True).click()
        assert page.evaluate(source, 3).startswith("time.sleep(0.3)")
        # the endpoint takes no request without the page's XSRF token
        status = page.evaluate(
            """async () => (await fetch('/nb2flow/parameter', {method: 'POST',
                 body: JSON.stringify({path: 'tags.ipynb'})})).status"""
        )
        assert status == 403

        # (f) the flow outputs a cell declares (output:NAME tags): a name is added once the
        # server's tag grammar takes it, removed by its chip; the other tags stay as they are
        before = analysed(page)
        page.locator(".jp-Notebook .jp-CodeCell").nth(4).locator(".nb2f-edit-tags").click()
        dialog = page.locator(".jp-Dialog")
        entry = dialog.locator("input[name=output-name]")
        entry.wait_for(timeout=20_000)
        assert chips(dialog) == []
        problem = dialog.locator(".nb2f-tag-error")
        for bad in ("9 lives", "class"):
            entry.fill(bad)
            dialog.locator("button[name=output-add]").click()
            page.wait_for_function(
                "(t) => document.querySelector('.jp-Dialog .nb2f-tag-error').innerText.includes(t)",
                arg=f"'output:{bad}'",
                timeout=20_000,
            )
            assert problem.inner_text() == (
                f"tags.ipynb, cell 6: malformed tag 'output:{bad}': output: needs a variable "
                "name (output:NAME, one per tag)"
            )
            assert chips(dialog) == []
        entry.fill("total")
        dialog.locator("button[name=output-add]").click()
        dialog.locator(".nb2f-output-chip[data-name=total]").wait_for(timeout=20_000)
        assert not problem.is_visible() and entry.input_value() == ""
        entry.fill("xs")
        entry.press("Enter")  # adds the name; the dialog stays open
        dialog.locator(".nb2f-output-chip[data-name=xs]").wait_for(timeout=20_000)
        assert chips(dialog) == ["total", "xs"] and dialog.is_visible()
        fits = dialog_fits(page)
        assert fits["inside"] and not fits["scrolls"], fits
        if server.app == "lab":
            shot(page, tmp_path, "jupyter-outputs.png", dialog)
        tags_of = f"() => {_PANEL}.content.widgets[5].model.getMetadata('tags')"
        apply(page, dialog, before, f"({tags_of})().includes('output:xs')")
        assert page.evaluate(tags_of) == [
            "task:reportnow", "retries:2", "after:make", "output:total", "output:xs",
        ]  # fmt: skip
        # opened again: the outputs are listed; one removed
        before = analysed(page)
        page.locator(".jp-Notebook .jp-CodeCell").nth(4).locator(".nb2f-edit-tags").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator(".nb2f-output-chip[data-name=total]").wait_for(timeout=20_000)
        assert chips(dialog) == ["total", "xs"]
        dialog.locator(".nb2f-output-chip[data-name=total] .nb2f-output-remove").click()
        assert chips(dialog) == ["xs"]
        apply(page, dialog, before, f"!({tags_of})().includes('output:total')")
        assert page.evaluate(tags_of) == ["task:reportnow", "retries:2", "after:make", "output:xs"]

        # the flow plan side panel shows the new task; clicking a node selects its cells
        page.evaluate("() => window.jupyterapp.commands.execute('nb2flow:show-plan')")
        plan = page.locator("#nb2flow-plan")
        plan.locator("g.nb2f-node[data-task='reportnow']").wait_for(timeout=20_000)
        nodes = plan.locator("g.nb2f-node").evaluate_all("gs => gs.map(g => g.dataset.task)")
        assert nodes == ["make", "write", "reportnow"]
        plan.locator("g.nb2f-node[data-task='make']").click()
        assert page.evaluate(f"() => {_PANEL}.content.activeCellIndex") == 3
        plan.locator("g.nb2f-node[data-task='write']").click()
        assert page.evaluate(f"() => {_PANEL}.content.activeCellIndex") == 4
        if server.app == "lab":
            shot(page, tmp_path, "jupyter-plan.png")

        # (e) a malformed tag (typed in the property inspector) shows its problem on the cell
        before = analysed(page)
        page.evaluate(
            f"() => {_PANEL}.content.widgets[3].model.setMetadata('tags', "
            "['task:make', 'retries:x'])"
        )
        wait_analysed(page, before)
        problem = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".nb2f-badge-problem")
        problem.wait_for(timeout=20_000)
        assert problem.inner_text() == "error: malformed tag 'retries:x': expected a whole number"
        assert badges(page)[3]["task"] == "write"  # the rest is still analysed
        if server.app == "lab":
            shot(page, tmp_path, "jupyter-badges.png")


def test_run_as_flow_and_the_edit_loop(server: JupyterServer, chromium_path: str, tmp_path):
    with browser_page(chromium_path, tmp_path, server) as page:
        open_alone(page, server, "loop.ipynb", loop_notebook())
        page.wait_for_selector(".nb2f-badge[data-role='task']", timeout=60_000)
        wait_kernel_idle(page)
        cells = cell_count(page)
        # (b) "Run as flow" in the notebook's toolbar: a %nb2flow run cell at the end, run
        run_button(page).click()
        page.wait_for_function(f"(n) => {_PANEL}.content.widgets.length > n", arg=cells)
        run_cell = cells  # the new last cell
        source = page.evaluate(
            f"(i) => {_PANEL}.content.widgets[i].model.sharedModel.getSource()", run_cell
        )
        assert source == "%load_ext nb2flow\n%nb2flow run"
        wait_cell_states(page, run_cell, {"make": "Completed", "write": "Completed"})
        wait_kernel_idle(page)
        assert cell_states(page, run_cell) == {"make": "Completed", "write": "Completed"}
        assert (server.root / "result.txt").read_text() == "6"
        assert widget_errors(page) == []
        if server.app == "lab":
            shot(page, tmp_path, "jupyter-run.png")

        # (c) edit one cell (unsaved), run again: only it runs, make comes from the cache
        set_source(page, 4, WRITE.format(" * 10"))
        run_button(page).click()
        wait_cell_states(page, run_cell, {"make": "Cached", "write": "Completed"})
        wait_kernel_idle(page)
        assert (server.root / "result.txt").read_text() == "60"
        assert cell_count(page) == cells + 1  # the same cell ran again

        # (d) `%nb2flow run` typed in a cell does the same, with the unsaved edit too
        set_source(page, 4, WRITE.format(" * 100"))
        page.evaluate(
            f"""() => {{ const w = {_PANEL}; const m = w.content.model;
                 m.sharedModel.insertCell(m.cells.length, {{cell_type: 'code',
                   source: '%nb2flow run -p n=4'}});
                 w.content.activeCellIndex = m.cells.length - 1; }}"""
        )
        typed = cells + 1
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
        wait_cell_states(page, typed, {"make": "Cached", "write": "Completed"})
        wait_kernel_idle(page)
        assert (server.root / "result.txt").read_text() == "600"
        # nothing was saved for any of it
        on_disk = json.loads((server.root / "loop.ipynb").read_text())
        assert "".join(on_disk["cells"][4]["source"]) == WRITE.format("")
        assert widget_errors(page) == []
