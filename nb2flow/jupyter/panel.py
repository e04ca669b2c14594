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
from nb2flow.runtime.core.model import RunView, format_duration, progress_text
from nb2flow.runtime.core.observers import Attachment, RunStart
from nb2flow.runtime.core.states import (
    COLOURS,
    COMPLETED,
    FAILED,
    FAILED_STATES,
    FINAL_STATES,
    RETRYING,
    RUNNING,
)
from nb2flow.runtime.core.tracebacks import error_line

TAB_TITLES = R.TABS
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


#: whether a panel of this process has rendered (the first render's cost is mostly imports)
_warm = False


class RunPanel:
    """Widgets showing one flow run. ``RunPanel(view)`` shows a finished or stored run;
    :meth:`live` follows a run as its events arrive. ``panel.widget`` is the VBox to display;
    :meth:`display` shows it so that, once the run has ended, the output is replaced by the
    final panel as static HTML (:func:`~nb2flow.jupyter.render.static_panel_html`), which a
    saved notebook keeps and shows without a kernel.

    Every tab is live, not only the one looked at (the kernel runs the flow, so it does not
    hear which tab the user picks): a tab is rendered again when what it shows changed, and
    while a task runs the graph, timeline and tasks table tick once a second. The log filter
    is CSS (:func:`~nb2flow.jupyter.render.log_filter_html`): it works during the run."""

    #: render at most this often (seconds)
    min_interval = 0.1
    #: ... and wait at least this many times the last render's cost before the next one
    cost_factor = 15.0
    #: ... but never longer than this (running durations keep ticking in huge runs)
    max_interval = 3.0
    #: rows of the tasks table / log lines kept in the live panel (the report shows all)
    table_limit = 500
    log_limit = 1000

    def __init__(self, view: RunView) -> None:
        import secrets

        import ipywidgets as W

        self.view = view
        self._lock = threading.RLock()
        self._rendered: dict[str, Any] = {}  # tab -> the key of what it shows
        self._queue: collections.deque[RunEvent] | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._done = threading.Event()
        self.renders = 0
        self.render_seconds = 0.0
        self.error: str | None = None
        #: the display of the panel (``display(..., display_id=True)``), replaced by the
        #: static panel when the run ends
        self.handle: Any = None
        self.finalized = False
        self._names: dict[str, str] = {}
        self._sources: list[str] = []
        #: a class only this panel's root has: the scope of its CSS log filter
        self.scope = f"nb2f-s{secrets.token_hex(5)}"

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
            style={"bar_color": COLOURS[COMPLETED].stroke, "description_width": "initial"},
        )
        self.graph = html()
        self.timeline = html()
        self.table = html()
        self.log_filter = html()
        self.logs = html()
        self.outputs = html()
        self.log_box = W.VBox([self.log_filter, self.logs], layout=plain)
        self.panes = {
            "Graph": self.graph,
            "Timeline": self.timeline,
            "Tasks": self.table,
            "Logs": self.log_box,
            "Outputs": self.outputs,
        }
        self.tabs = W.Tab(children=[self.panes[t] for t in TAB_TITLES], layout=plain)
        for i, title in enumerate(TAB_TITLES):
            self.tabs.set_title(i, title)
        self.widget = W.VBox(
            [self.header, self.progress, self.tabs],
            layout=W.Layout(border="1px solid #d1d5db", padding="6px 10px"),
        )
        for cls in ("nb2f", "nb2f-panel", self.scope):
            self.widget.add_class(cls)

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

    def display(self) -> None:
        """Display the live widget (with the header as HTML beside it, for viewers without
        widgets); when the run has ended the output becomes the static final panel."""
        from IPython.display import display

        bundle = self.widget._repr_mimebundle_()
        bundle["text/html"] = f"<style>{R.CSS}</style>" + R.header_html(self.view)
        self.handle = display(bundle, raw=True, display_id=True)
        if self._thread is None or self._done.is_set():
            self.finalize()

    def _ipython_display_(self) -> None:
        self.display()

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
                    self.finalize()
                    break
                now = time.monotonic()
                next_render = now + self.min_interval
                if changed:
                    last_change, poll = now, fast
                elif now - last_change > 5:  # a long task (or a run that died): wake less
                    poll = 0.25
                if changed or now - last >= 1.0:  # running times tick once a second
                    t = time.perf_counter()
                    global _warm
                    warm = _warm  # the process's first render imports the renderer's modules
                    self.render()
                    _warm = True
                    cost = time.perf_counter() - t if warm else 0.0
                    wait = min(self.max_interval, self.cost_factor * cost)
                    next_render = now + max(self.min_interval, wait)
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

    def finalize(self) -> None:
        """Replace the displayed widget by the final panel as static HTML (it is what a saved
        notebook keeps); the widgets are closed. Nothing happens unless :meth:`display` showed
        the panel and its run has ended."""
        if self.handle is None or self.finalized or not self.view.final:
            return
        static = R.static_panel_html(self.view, self._cached_names(), limit=self.table_limit,
                                     log_limit=self.log_limit)  # fmt: skip
        self.handle.update({"text/html": static, "text/plain": _summary_text(self.view)}, raw=True)
        self.finalized = True
        self.widget.close()

    # ------------------------------------------------------------------ rendering

    def _cached_names(self) -> dict[str, str]:
        """Run names of the runs cached values came from (read once from the store)."""
        wanted = {t.cached_from for t in self.view.tasks.values() if t.cached_from}
        missing = wanted - set(self._names)
        if missing:
            self._names.update(run_names(missing))
            self._names.update({m: m[:8] for m in missing if m not in self._names})
        return self._names

    def _keys(self, final: bool) -> dict[str, Any]:
        """What each tab shows, in a few numbers: a tab is rendered again when its key
        changes. Running tasks make the graph, timeline and table tick each second."""
        v = self.view
        tick = None
        if not final and not v.final and any(t.state in TICKING for t in v.tasks.values()):
            tick = int(time.monotonic())
        states = (v.state_version, tick)
        shown = sum(1 for t in v.tasks.values() if t.traceback)
        return {
            "Graph": states,
            "Timeline": states,
            "Tasks": states,
            "Logs": (len(v.logs), shown),
            "Outputs": (len(v.artifacts), sum(1 for t in v.tasks.values() if t.result), v.result),
        }

    def render(self, final: bool = False) -> None:
        """Re-render the header and progress bar, and every tab whose content changed (all
        of them once the run is final or the panel shows a finished run)."""
        t = time.perf_counter()
        with self._lock:
            v = self.view
            now = time.time()
            self.header.value = f"<style>{R.CSS}</style>" + R.header_html(v, now)
            done, known = R.progress(v)
            self.progress.max = max(known, 1)
            self.progress.value = done
            failed = any(task.state in FAILED_STATES for task in v.tasks.values())
            self.progress.style.bar_color = (
                COLOURS[FAILED].fill if failed else COLOURS[COMPLETED].stroke
            )
            self.progress.description = progress_text(v)
            final = final or self._thread is None or v.final
            for tab, key in self._keys(final).items():
                if self._rendered.get(tab) != key:
                    self._render_tab(tab, now)
                    self._rendered[tab] = key
        self.renders += 1
        self.render_seconds += time.perf_counter() - t

    def _render_tab(self, tab: str, now: float) -> None:
        v = self.view
        if tab == "Logs":
            sources = R.log_sources(v)
            if sources != self._sources or not self.log_filter.value:
                # only when a task with logs appears: a new select forgets the user's choice
                self._sources = sources
                self.log_filter.value = R.log_filter_html(v, self.scope, f"{self.scope}-", sources)
            self.logs.value = R.pane_html(v, tab, now, log_limit=self.log_limit, sources=sources)
            return
        kw: dict[str, Any] = {}
        if tab in ("Graph", "Tasks"):
            kw = {"limit": self.table_limit, "names": self._cached_names()}
        self.panes[tab].value = R.pane_html(v, tab, now, **kw)


#: states whose durations grow while the panel looks
TICKING = frozenset({RUNNING, RETRYING})


def _summary_text(view: RunView) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in view.counts().items())
    return f"{view.flow_name} {view.run_name} {view.state} ({counts})"


def run_names(ids: Any) -> dict[str, str]:
    """Run names of flow run ids, from the run store (empty when there is none)."""
    path = settings.home() / "runs.db"
    if not path.exists():
        return {}
    from nb2flow.store.db import Store

    try:
        with Store(path, sweep=False) as store:
            return store.run_names(ids)
    except Exception:  # noqa: BLE001 - names are a nicety: ids do when the store is unreadable
        return {}


def _ends(ev: RunEvent, flow_run_id: str) -> bool:
    return (
        ev.kind == "flow_state"
        and ev.flow_run_id == flow_run_id
        and ev.data.get("state") in FINAL_STATES
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
        _display(panel)
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
    """Display the panel of a finished FlowRun, a RunView or a stored run reference, as the
    static panel (it stays in a saved notebook); a live run's panel, live."""
    if not in_widget_kernel():
        from nb2flow.errors import Nb2flowError

        raise Nb2flowError(
            "show() draws widgets: it needs a Jupyter kernel with ipywidgets; in a terminal use "
            "`nb2flow show RUN`, or `nb2flow report RUN` for an HTML page"
        )
    if isinstance(run, RunPanel) and not run.view.final:
        _display(run)
        return
    view = resolve(run)
    if not view.final:  # a stored run still running: its panel as it is now
        _display(run_panel(view))
        return
    from IPython.display import HTML

    _display(HTML(R.static_panel_html(view, run_names(
        {t.cached_from for t in view.tasks.values() if t.cached_from}))))  # fmt: skip


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
    """One line of the run browser: when, which run, how it went, and what and where it ran
    (runner, cached tasks, parameters, script and folder)."""
    import os

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created)) if s.created else "?"
    took = format_duration(s.duration) if s.final else "running"
    parts = [f"{when}  {s.flow_name} / {s.run_name}  {s.state}  {took}  {s.done}/{s.tasks} tasks"]
    if s.failed:
        parts.append(f"{s.failed} failed")
    if s.cached:
        parts.append(f"{s.cached} cached")
    if s.task_runner:
        parts.append(s.task_runner)
    if s.tags:
        parts.append("tags " + ",".join(s.tags))
    if s.parameters:
        parts.append(" ".join(f"{k}={v}" for k, v in s.parameters.items())[:80])
    if s.script:
        parts.append(os.path.basename(s.script) + (f" in {s.cwd}" if s.cwd else ""))
    return "  ".join(parts)


def runs(flow: str | None = None, limit: int = 50) -> RunBrowser:
    """A browser of the stored runs (display it, or leave it as a cell's last expression)."""
    return RunBrowser(flow=flow, limit=limit)
