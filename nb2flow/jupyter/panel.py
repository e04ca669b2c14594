"""The live run panel: standard ipywidgets (HTML, Tab, IntProgress, Dropdown) holding the inline
SVG/HTML from :mod:`nb2flow.jupyter.render`, so it works in JupyterLab, Notebook 7 and VS Code
with no front-end extension and nothing fetched from a CDN.

Live updates cost the run little: the run-event subscriber is ``deque.append`` (nothing else
runs on the flow's hot path); a daemon thread looks at the queue every 20 ms and, at most
~10 times a second, folds the queued events into its own :class:`RunView` and re-renders the
header, the progress bar and the tab being looked at. The wait between renders grows with
what a render costs, so a huge run spends a bounded share of the CPU on its panel. When the
run's final state arrives the thread renders every tab once more, unsubscribes and ends.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Any

from nb2flow import settings
from nb2flow.jupyter import render as R
from nb2flow.runtime.core.events import RunEvent, subscribe, unsubscribe
from nb2flow.runtime.core.model import RunView, format_duration
from nb2flow.runtime.core.observers import Attachment, RunStart
from nb2flow.runtime.core.states import COLOURS, FAILED_STATES, FINAL_STATES
from nb2flow.runtime.core.tracebacks import error_line

TAB_TITLES = ("Graph", "Timeline", "Tasks", "Logs")
#: the live panels of this process by flow run id (newest last, a few kept), for ``show()``
_live: dict[str, RunPanel] = {}
_LIVE_KEEP = 20


def in_widget_kernel() -> bool:
    """True inside a running IPython kernel (not a terminal IPython) with ipywidgets."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


class RunPanel:
    """Widgets showing one flow run. ``RunPanel(view)`` shows a finished or stored run;
    :meth:`live` follows a run as its events arrive. ``panel.widget`` is the VBox to display
    (the panel itself displays as that widget in IPython)."""

    #: render at most this often (seconds)
    min_interval = 0.1
    #: ... and wait at least this many times the last render's cost before the next one
    cost_factor = 15.0
    #: rows of the tasks table / log lines kept in the live panel (the report shows all)
    table_limit = 500
    log_limit = 1000

    def __init__(self, view: RunView) -> None:
        import ipywidgets as W

        self.view = view
        self._lock = threading.RLock()
        self._rendered: dict[int, tuple[int, Any]] = {}  # tab -> (view version, filter key)
        self._queue: collections.deque[RunEvent] | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._done = threading.Event()
        self.renders = 0
        self.render_seconds = 0.0
        self.error: str | None = None

        # one Layout and one style shared by the plain widgets: building a widget's own
        # Layout costs more than the widget, and the panel is built as the run starts
        plain = W.Layout()
        try:
            from ipywidgets.widgets.widget_string import HTMLStyle

            shared = {"layout": plain, "style": HTMLStyle()}
        except ImportError:  # another ipywidgets layout of modules: own styles then
            shared = {"layout": plain}

        def html() -> Any:
            return W.HTML(**shared)

        self.header = html()
        self.progress = W.IntProgress(
            value=0,
            min=0,
            max=1,
            description="0 / 0 tasks",
            layout=W.Layout(width="70%"),
            style={"bar_color": "#16a34a", "description_width": "initial"},
        )
        self.graph = html()
        self.timeline = html()
        self.table = html()
        self.logs = html()
        self.log_task: Any = None
        self.log_level: Any = None
        self.log_box = W.VBox([self.logs], layout=plain)
        self.tabs = W.Tab(
            children=[self.graph, self.timeline, self.table, self.log_box], layout=plain
        )
        for i, title in enumerate(TAB_TITLES):
            self.tabs.set_title(i, title)
        self.widget = W.VBox(
            [self.header, self.progress, self.tabs],
            layout=W.Layout(border="1px solid #d1d5db", padding="6px 10px"),
        )
        self.widget.add_class("nb2f")
        self.widget.add_class("nb2f-panel")
        self.tabs.observe(self._on_view_change, "selected_index")

    def _log_filters(self) -> tuple[Any, Any]:
        if self.log_task is None:
            import ipywidgets as W

            self.log_task = W.Dropdown(
                options=[("all tasks", "")],
                value="",
                description="task",
                layout=W.Layout(width="280px"),
            )
            self.log_level = W.Dropdown(
                options=[("all", 0), ("INFO+", 20), ("WARNING+", 30), ("ERROR+", 40)],
                value=0,
                description="level",
                layout=W.Layout(width="180px"),
            )
            self.log_box.children = [W.HBox([self.log_task, self.log_level]), self.logs]
            self.log_task.observe(self._on_view_change, "value")
            self.log_level.observe(self._on_view_change, "value")
        return self.log_task, self.log_level

    # ------------------------------------------------------------------ construction

    @classmethod
    def live(cls, flow_run_id: str, view: RunView | None = None) -> RunPanel:
        """A panel following ``flow_run_id``: subscribes to run events and starts the render
        thread. Events already folded into ``view`` (if given) are shown too."""
        panel = cls(view if view is not None else RunView(flow_run_id))
        panel._start()
        _live[flow_run_id] = panel
        while len(_live) > _LIVE_KEEP:
            _live.pop(next(iter(_live)))
        return panel

    def _start(self) -> None:
        self._queue = collections.deque()
        subscribe(self._queue.append)  # the whole hot-path cost: one deque.append per event
        # the thread renders on its first wake; until then the header says it is starting
        self.header.value = f"<style>{R.CSS}</style>" + R.header_html(self.view)
        self._thread = threading.Thread(
            target=self._loop, name=f"nb2flow-panel-{self.view.id}", daemon=True
        )
        self._thread.start()

    def _ipython_display_(self) -> None:
        _display(self.widget)

    # ------------------------------------------------------------------ live loop

    def _drain(self) -> bool:
        q = self._queue
        if not q:
            return False
        with self._lock:
            while q:
                self.view.apply(q.popleft())
        return True

    def _loop(self) -> None:
        fast = poll = min(0.02, self.min_interval)
        next_render = time.monotonic() + self.min_interval
        last = last_change = time.monotonic()
        q = self._queue
        assert q is not None
        try:
            while not self._closed.wait(poll):
                # render at the run's end at once; otherwise only when the interval is up
                if time.monotonic() < next_render and not (q and _ends(q[-1], self.view.id)):
                    continue
                changed = self._drain()
                if self.view.final:
                    self._drain()
                    self.render(final=True)
                    break
                now = time.monotonic()
                next_render = now + self.min_interval
                if changed:
                    last_change, poll = now, fast
                elif now - last_change > 5:  # a long task (or a run that died): wake less
                    poll = 0.25
                if changed or now - last >= 1.0:  # keep the elapsed time ticking
                    t = time.perf_counter()
                    self.render(header_only=not changed)
                    cost = time.perf_counter() - t
                    next_render = now + max(self.min_interval, self.cost_factor * cost)
                    last = now
        except Exception as exc:  # noqa: BLE001 - a broken panel must never break the run
            self.error = f"{type(exc).__name__}: {exc}"
            try:
                self.header.value += (
                    f'<div class="nb2f-error">panel error: {R.esc(self.error)}</div>'
                )
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop following the run (the widgets keep what they show)."""
        if self._queue is not None:
            unsubscribe(self._queue.append)
        self._closed.set()
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the live panel has rendered the final state of its run."""
        if self._thread is None:
            return True
        return self._done.wait(timeout)

    # ------------------------------------------------------------------ rendering

    def _on_view_change(self, _change: Any) -> None:
        self._drain()
        self.render()

    def render(self, final: bool = False, header_only: bool = False) -> None:
        """Re-render what changed: header and progress always, the selected tab (every tab
        once the run is final or the panel shows a finished run)."""
        t = time.perf_counter()
        with self._lock:
            v = self.view
            self.header.value = f"<style>{R.CSS}</style>" + R.header_html(v)
            done, known = R.progress(v)
            self.progress.max = max(known, 1)
            self.progress.value = done
            failed = any(task.state in FAILED_STATES for task in v.tasks.values())
            self.progress.style.bar_color = "#dc2626" if failed else "#16a34a"
            self.progress.description = f"{done} / {known} tasks"
            if not header_only:
                every = final or self._thread is None
                tabs = range(len(TAB_TITLES)) if every else [self.tabs.selected_index or 0]
                for i in tabs:
                    self._render_tab(i)
        self.renders += 1
        self.render_seconds += time.perf_counter() - t

    def _render_tab(self, i: int) -> None:
        v = self.view
        key: Any = None
        if i == 3:
            task, level = self._log_filters()
            key = (task.value, level.value)
        if self._rendered.get(i) == (v.version, key):
            return
        if i == 0:
            self.graph.value = f'<div class="nb2f-scroll">{R.graph_svg(v)}</div>' + _legend_html()
        elif i == 1:
            self.timeline.value = f'<div class="nb2f-scroll">{R.timeline_svg(v)}</div>'
        elif i == 2:
            self.table.value = (
                f'<div class="nb2f-scroll">{R.tasks_table_html(v, self.table_limit)}</div>'
            )
        else:
            self._update_log_options()
            self.logs.value = (
                '<div class="nb2f-scroll">'
                + R.logs_html(
                    v,
                    task_run_id=self.log_task.value or None,
                    min_level=self.log_level.value,
                    limit=self.log_limit,
                )
                + "</div>"
            )
        self._rendered[i] = (v.version, key)

    def _update_log_options(self) -> None:
        v = self.view
        with_logs = {lg.task_run_id for lg in v.logs}
        options = [("all tasks", "")] + [
            (t.label, t.id) for t in v.tasks.values() if t.id in with_logs or t.traceback
        ]
        if options != list(self.log_task.options):
            current = self.log_task.value
            with self.log_task.hold_trait_notifications():
                self.log_task.options = options
                self.log_task.value = current if any(o[1] == current for o in options) else ""


def _ends(ev: RunEvent, flow_run_id: str) -> bool:
    return (
        ev.kind == "flow_state"
        and ev.flow_run_id == flow_run_id
        and ev.data.get("state") in FINAL_STATES
    )


def _legend_html() -> str:
    return (
        '<div class="nb2f-legend" style="margin-top:4px">'
        + " ".join(R.badge(s) for s in COLOURS)
        + "</div>"
    )


# ---------------------------------------------------------------------- public entry points


def maybe_attach(flow_run_id: str) -> RunPanel | None:
    """Called by the runtime at the start of a top-level flow run when ``ipykernel`` is loaded:
    show a live panel if this is a real kernel with ipywidgets and ``NB2FLOW_PANEL`` is not
    ``off``. Never raises: the run goes on without a panel if anything is missing."""
    if not settings.panel_enabled() or not in_widget_kernel():
        return None
    try:
        panel = RunPanel.live(flow_run_id)
        _display(panel.widget)
    except Exception:  # noqa: BLE001 - no panel is better than a failed run
        return None
    return panel


def observe(run: RunStart) -> Attachment | None:
    """The panel's observer of a top-level flow run (registered by the runtime for runs in a
    kernel): a live panel, which shows the run's logs itself."""
    try:
        panel = maybe_attach(run.id)
    except Exception as exc:  # noqa: BLE001 - the panel must not stop the flow
        print(f"warning: no live panel: {error_line(exc)}", file=sys.stderr)
        return None
    return Attachment(shows_logs=True) if panel is not None else None


def resolve(run: Any) -> RunView:
    """A RunView from a RunView, a FlowRun (its ``view``; else its ``id``), a live panel, or
    a run reference for the store (id, unique id prefix or run name)."""
    if isinstance(run, RunView):
        return run
    if isinstance(run, RunPanel):
        run.wait(5)
        return run.view
    view = getattr(run, "view", None)
    if isinstance(view, RunView):  # a FlowRun keeps its own events: no store needed
        return view
    ref = run if isinstance(run, str) else None
    if ref is None:
        for attr in ("flow_run_id", "id"):
            value = getattr(run, attr, None)
            if isinstance(value, str):
                ref = value
                break
    if ref is None:
        raise TypeError(f"cannot show {type(run).__name__}: expected a run, a RunView or a run id")
    panel = _live.get(ref)
    if panel is not None:
        panel.wait(5)
        return panel.view
    from nb2flow.store.db import Store  # only when a stored run is asked for

    with Store() as store:
        return store.load_run(ref)


def run_panel(run: Any) -> RunPanel:
    """A panel for a finished, live or stored run, without displaying it."""
    if isinstance(run, RunPanel):
        return run
    p = RunPanel(resolve(run))
    p.render(final=True)
    return p


def show(run: Any) -> None:
    """Display the panel of a finished FlowRun, a RunView or a stored run reference."""
    if not in_widget_kernel():
        from nb2flow.errors import Nb2flowError

        raise Nb2flowError(
            "show() draws widgets: it needs a Jupyter kernel with ipywidgets; in a terminal use "
            "`nb2flow show RUN`, or `nb2flow report RUN` for an HTML page"
        )
    _display(run_panel(run).widget)


class RunBrowser:
    """The run history of the store: a flow filter, the list of runs (newest first) and the
    panel of the run picked in it. ``refresh()`` reloads the list."""

    def __init__(self, flow: str | None = None, limit: int = 50, path: Any = None) -> None:
        import ipywidgets as W

        self.path = path
        self.limit = limit
        self.flow = W.Dropdown(options=[("all flows", "")], value="", description="flow")
        self.runs = W.Select(options=[], rows=8, layout=W.Layout(width="100%"))
        self.refresh_button = W.Button(description="refresh", icon="refresh")
        self.body = W.VBox([])
        self.panel: RunPanel | None = None
        self.title = W.HTML()
        self.widget = W.VBox(
            [self.title, W.HBox([self.flow, self.refresh_button]), self.runs, self.body],
            layout=W.Layout(border="1px solid #d1d5db", padding="6px 10px"),
        )
        self.widget.add_class("nb2f")
        self.refresh(flow)
        self.flow.observe(lambda _c: self.refresh(), "value")
        self.runs.observe(lambda c: self.open(c["new"]), "value")
        self.refresh_button.on_click(lambda _b: self.refresh())

    def _store(self) -> Any:
        from nb2flow.store.db import Store

        return Store(self.path)

    def refresh(self, flow: str | None = None) -> None:
        with self._store() as store:
            flows = [("all flows", "")] + [(f"{n} ({c})", n) for n, c, _ in store.flows()]
            if flow is not None:
                self.flow.options = flows
                self.flow.value = flow if any(v == flow for _, v in flows) else ""
            elif list(self.flow.options) != flows:
                current = self.flow.value
                self.flow.options = flows
                self.flow.value = current if any(v == current for _, v in flows) else ""
            summaries = store.list_runs(flow=self.flow.value or None, limit=self.limit)
            where = store.path
        self.runs.options = [(_summary_label(s), s.id) for s in summaries]
        shown = f"the {len(summaries)} most recent" if len(summaries) == self.limit else "all"
        self.title.value = (
            f"<style>{R.CSS}</style><div class='nb2f-head'><span class='nb2f-flow'>Runs</span>"
            f" <span class='nb2f-run'>{shown} in {R.esc(where)}</span></div>"
        )

    def open(self, run_id: str | None) -> None:
        if not run_id:
            self.body.children = []
            self.panel = None
            return
        with self._store() as store:
            view = store.load_run(run_id)
        self.panel = RunPanel(view)
        self.panel.render(final=True)
        self.body.children = [self.panel.widget]

    def _ipython_display_(self) -> None:
        _display(self.widget)


def _summary_label(s: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created)) if s.created else "?"
    took = format_duration(s.duration) if s.final else "running"
    return f"{when}  {s.flow_name} / {s.run_name}  {s.state}  {took}  {s.tasks} tasks"


def runs(flow: str | None = None, limit: int = 50) -> RunBrowser:
    """A browser of the stored runs (display it, or leave it as a cell's last expression)."""
    return RunBrowser(flow=flow, limit=limit)
