"""The Jupyter server extension behind the nb2flow JupyterLab / Notebook 7 extension.

The front end only displays and edits; the analysis runs here, in Python, with the
converter's own code (:func:`nb2flow.extensions.cells.summarize`), on the notebook's current,
unsaved content:

| endpoint | what |
|---|---|
| ``GET /nb2flow/grammar`` | the tag grammar (:func:`nb2flow.notebook.tags.grammar`) for the tag controls |
| ``POST /nb2flow/analyze`` ``{path, notebook}`` | the per-cell summary and the plan's graph SVG |
| ``POST /nb2flow/convert`` ``{path, notebook}`` | write ``converted_scripts/<name>.py`` beside the notebook |
| ``POST /nb2flow/literals`` ``{path, source}`` | the literals a cell's code spells, for the parameter control |
| ``POST /nb2flow/parameter`` ``{path, notebook, cell, literal, name}`` | make a literal of cell ``cell`` (from 1) the flow parameter ``name``: the cells to change |
| ``POST /nb2flow/tags`` ``{path, notebook, cell, add, remove}`` | add and remove tags of cell ``cell`` (from 1) as ``nb2flow tag`` does (the tag form's check of an ``output:NAME``): the cell's tags after |
| ``POST /nb2flow/snapshot`` ``{path, cell, notebook}`` | the front end hands over the notebook as a ``%nb2flow`` cell starts |
| ``GET /nb2flow/snapshot?path=&cell=&wait=`` | the kernel's ``%nb2flow`` takes that snapshot (waits up to ``wait`` s) |

Enabled by ``etc/jupyter/jupyter_server_config.d/nb2flow.json`` (installed with the package).
Errors in the notebook are data in the answer (problems on cells), never HTTP errors; a
request that is not a notebook gets 400 with ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from nb2flow.errors import Nb2flowError

#: snapshots older than this (seconds) are never handed to a kernel
SNAPSHOT_TTL = 60.0
#: a path whose front end spoke to the server this recently has the extension loaded
SEEN_TTL = 3600.0


class _State:
    def __init__(self) -> None:
        self.snapshots: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.seen: dict[str, float] = {}
        self.memos: dict[str, dict[str, Any]] = {}
        self.arrived = asyncio.Event()

    def saw(self, path: str) -> None:
        self.seen[path] = time.monotonic()


_state = _State()


class _Handler(APIHandler):
    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            raise web.HTTPError(400, "expected {path, notebook}")
        return data

    def answer(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def notebook(self, data: dict[str, Any]) -> Any:
        from nb2flow.notebook.reader import notebook_from_json

        return notebook_from_json(data.get("notebook"), data["path"])

    def folder(self, path: str) -> Path:
        """The folder of ``path`` (relative to the server's root), refusing to leave it."""
        root = Path(self.settings["server_root_dir"]).expanduser().resolve()
        target = (root / path).resolve()
        if root != target and root not in target.parents:
            raise web.HTTPError(400, "the path is outside the server's root")
        return target.parent


class GrammarHandler(_Handler):
    @web.authenticated
    def get(self) -> None:
        from nb2flow.notebook.tags import grammar

        self.answer(grammar())


#: notebooks whose cells' analysis is remembered between requests (the most recent ones)
MEMO_NOTEBOOKS = 16


def _memo(path: str, cells: int) -> dict[str, Any]:
    """The code -> names memo of notebook ``path`` (see ``names.remembering``): only the
    cells edited since the last request are analysed again. Emptied when it outgrows the
    notebook (old versions of edited cells pile up as the user types)."""
    memos = _state.memos
    memo = memos.pop(path, None)
    if memo is None or len(memo) > 4 * cells + 256:
        memo = {}
    memos[path] = memo  # the most recently used last
    while len(memos) > MEMO_NOTEBOOKS:
        del memos[next(iter(memos))]
    return memo


def analyze(path: str, data: Any) -> dict[str, Any]:
    """The answer of ``/nb2flow/analyze``: ``{summary, svg, ms, cpu_ms}`` (the analysis's wall
    and CPU time, which the benchmark reports). Cells analysed for an earlier request of the
    same notebook are not analysed again (``NB2FLOW_ANALYSIS_MEMO=off``: they are, the
    benchmark's baseline)."""
    from contextlib import nullcontext

    from nb2flow.analysis.names import remembering
    from nb2flow.extensions.cells import plan_svg, summarize
    from nb2flow.notebook.reader import notebook_from_json

    start, cpu = time.perf_counter(), time.thread_time()
    nb = notebook_from_json(data, path)
    remember = os.environ.get("NB2FLOW_ANALYSIS_MEMO", "on") != "off"
    with remembering(_memo(path, len(nb.cells))) if remember else nullcontext():
        summary = summarize(nb)
    svg = plan_svg(summary, direction="TB") if summary["tasks"] else ""  # a narrow side panel
    return {
        "summary": summary,
        "svg": svg,
        "ms": (time.perf_counter() - start) * 1000,
        "cpu_ms": (time.thread_time() - cpu) * 1000,
    }


class AnalyzeHandler(_Handler):
    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        _state.saw(data["path"])
        loop = asyncio.get_running_loop()
        try:  # off the event loop: typing in other tabs never waits for an analysis
            result = await loop.run_in_executor(None, analyze, data["path"], data.get("notebook"))
        except Nb2flowError as exc:
            self.answer({"error": str(exc)}, 400)
            return
        self.answer(result)


class ConvertHandler(_Handler):
    @web.authenticated
    async def post(self) -> None:
        from nb2flow.codegen import convert_notebook, write_script

        data = self.body()
        out_dir = self.folder(data["path"]) / "converted_scripts"
        try:
            nb = self.notebook(data)
            conversion = convert_notebook(nb, label=Path(data["path"]).name, out_dir=out_dir)
            written = write_script(conversion, out_dir)
        except Nb2flowError as exc:
            self.answer({"error": str(exc)}, 400)
            return
        root = Path(self.settings["server_root_dir"]).expanduser().resolve()
        self.answer(
            {
                "written": written.resolve().relative_to(root).as_posix(),
                "tasks": len(conversion.tasks),
                "warnings": conversion.warnings,
            }
        )


class LiteralsHandler(_Handler):
    @web.authenticated
    def post(self) -> None:
        from nb2flow.notebook.edit import cell_literals

        data = self.body()
        if not isinstance(data.get("source"), str):
            raise web.HTTPError(400, "expected {path, source}")
        self.answer({"literals": cell_literals(data["source"])})


#: marks the cells of the notebook sent, to find them again in the edited copy
_SENT = "nb2flow-sent-"


def make_parameter(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """The answer of ``/nb2flow/parameter``: :func:`nb2flow.notebook.edit.edit_cells` on the
    notebook sent, as the cells the front end changes in its model (so that undo and save
    work as for any edit): ``{"cells": [{"index", "at", "cell_type", "source", "tags"}],
    "changes", "warnings"}``, ``index`` being the cell's position in the notebook sent (None
    for a new cell) and ``at`` its position after the edit. Nb2flowError names the cell."""
    from nb2flow.notebook.edit import edit_cells
    from nb2flow.notebook.reader import notebook_from_json

    sent = notebook_from_json(data.get("notebook"), path)  # not a notebook: its one line
    before = sent.cells
    cells_sent = sent.data["cells"]
    marked = dict(sent.data, cells=[dict(c, id=f"{_SENT}{i}") for i, c in enumerate(cells_sent)])
    label = Path(path).name
    edit = edit_cells(
        marked, cells=[data["cell"]], params=[(data["name"], data["literal"])], label=label
    )
    after = notebook_from_json(edit.notebook, path).cells
    cells = []
    for at, (node, cell) in enumerate(zip(edit.notebook["cells"], after, strict=True)):
        mark = str(node.get("id", ""))
        index = int(mark.removeprefix(_SENT)) if mark.startswith(_SENT) else None
        old = before[index] if index is not None else None
        if old is None or (old.source, old.tags) != (cell.source, cell.tags):
            cells.append(
                {
                    "index": index,
                    "at": at,
                    "cell_type": cell.kind,
                    "source": cell.source,
                    "tags": list(cell.tags),
                }  # fmt: skip
            )
    return {"cells": cells, "changes": edit.changes, "warnings": edit.warnings}


class _CellEditHandler(_Handler):
    """``POST {path, notebook, cell, ...}``: an edit of cell ``cell`` (from 1) of the notebook
    sent; a refusal (Nb2flowError) is 400 ``{"error"}``, one line naming the cell."""

    expected = "{path, notebook, cell}"

    def valid(self, data: dict[str, Any]) -> bool:
        return True

    def edit(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @web.authenticated
    def post(self) -> None:
        data = self.body()
        cell = data.get("cell")
        if not (isinstance(cell, int) and not isinstance(cell, bool) and self.valid(data)):
            raise web.HTTPError(400, f"expected {self.expected}")
        try:
            self.answer(self.edit(data["path"], data))
        except Nb2flowError as exc:
            self.answer({"error": str(exc)}, 400)


class ParameterHandler(_CellEditHandler):
    expected = "{path, notebook, cell, literal, name}"

    def valid(self, data: dict[str, Any]) -> bool:
        return isinstance(data.get("literal"), str) and isinstance(data.get("name"), str)

    def edit(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        return make_parameter(path, data)


def edit_tags(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """The answer of ``/nb2flow/tags``: :func:`nb2flow.notebook.edit.edit_cells` adding
    ``add`` to and taking ``remove`` off cell ``cell`` of the notebook sent, the tag grammar
    checking each tag and the result: ``{"tags", "changes", "warnings"}``. Nb2flowError
    names the cell."""
    from nb2flow.notebook.edit import edit_cells
    from nb2flow.notebook.reader import notebook_from_json

    sent = notebook_from_json(data.get("notebook"), path)  # not a notebook: its one line
    edit = edit_cells(
        sent.data,
        cells=[data["cell"]],
        add=data.get("add") or [],
        remove=data.get("remove") or [],
        label=Path(path).name,
    )
    cell = edit.notebook["cells"][data["cell"] - 1]
    tags = list(cell.get("metadata", {}).get("tags") or [])
    return {"tags": tags, "changes": edit.changes, "warnings": edit.warnings}


def _strings(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


class TagsHandler(_CellEditHandler):
    expected = "{path, notebook, cell, add, remove}"

    def valid(self, data: dict[str, Any]) -> bool:
        return _strings(data.get("add")) and _strings(data.get("remove"))

    def edit(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        return edit_tags(path, data)


class SnapshotHandler(_Handler):
    @web.authenticated
    def post(self) -> None:
        data = self.body()
        cell = data.get("cell")
        if not isinstance(cell, str) or not isinstance(data.get("notebook"), dict):
            raise web.HTTPError(400, "expected {path, cell, notebook}")
        _state.saw(data["path"])
        now = time.monotonic()
        for key, (ts, _) in list(_state.snapshots.items()):
            if now - ts > SNAPSHOT_TTL:
                del _state.snapshots[key]
        _state.snapshots[(data["path"], cell)] = (now, data["notebook"])
        _state.arrived.set()
        _state.arrived = asyncio.Event()
        self.answer({"ok": True})

    @web.authenticated
    async def get(self) -> None:
        path = self.get_argument("path")
        cell = self.get_argument("cell")
        wait = min(float(self.get_argument("wait", "0") or 0), 10.0)
        seen = _state.seen.get(path)
        # no extension ever spoke for this notebook: no snapshot will come, do not wait
        if seen is None or time.monotonic() - seen > SEEN_TTL:
            wait = 0
        deadline = time.monotonic() + wait
        while True:
            found = _state.snapshots.pop((path, cell), None)
            if found is not None and time.monotonic() - found[0] <= SNAPSHOT_TTL:
                self.answer({"notebook": found[1]})
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self.answer({"error": "no snapshot"}, 404)
                return
            try:
                await asyncio.wait_for(_state.arrived.wait(), timeout=left)
            except TimeoutError:
                pass


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "nb2flow", "grammar"), GrammarHandler),
            (url_path_join(base, "nb2flow", "analyze"), AnalyzeHandler),
            (url_path_join(base, "nb2flow", "convert"), ConvertHandler),
            (url_path_join(base, "nb2flow", "literals"), LiteralsHandler),
            (url_path_join(base, "nb2flow", "parameter"), ParameterHandler),
            (url_path_join(base, "nb2flow", "tags"), TagsHandler),
            (url_path_join(base, "nb2flow", "snapshot"), SnapshotHandler),
        ],
    )
    serverapp.log.info("nb2flow: server extension loaded (/nb2flow/analyze)")
