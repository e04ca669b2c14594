"""The ipywidgets panel: static and live rendering, throttling, filters, hooks, run browser."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("ipywidgets")

from sample_run import record, replay, sample_events  # noqa: E402

from nb2flow.jupyter import panel as P  # noqa: E402
from nb2flow.runtime.core import events  # noqa: E402
from nb2flow.runtime.core import states as S  # noqa: E402
from nb2flow.runtime.core.model import RunView  # noqa: E402


def finished() -> RunView:
    return RunView.from_events("sample-run", sample_events())


def test_static_panel_shows_every_part_of_a_failed_run():
    p = P.run_panel(finished())
    assert "duration-prediction" in p.header.value and "brave-otter" in p.header.value
    assert 'data-state="Failed"' in p.header.value
    assert "inconsistent numbers of samples" in p.header.value  # the error, without clicking
    assert (p.progress.value, p.progress.max) == (8, 8)
    assert p.progress.style.bar_color == S.colour(S.FAILED).fill  # red: a task failed
    # every tab rendered for a finished run (the saved notebook keeps them all)
    assert p.graph.value.count('class="nb2f-node"') == 8
    assert 'data-task="evaluate" data-state="Failed"' in p.graph.value
    assert 'data-task="register_model" data-state="NotRun"' in p.graph.value
    assert 'class="nb2f-timeline"' in p.timeline.value
    assert "inconsistent numbers of samples" in p.table.value
    assert "Traceback (most recent call last)" in p.logs.value
    assert [p.tabs.get_title(i) for i in range(5)] == [
        "Graph",
        "Timeline",
        "Tasks",
        "Logs",
        "Outputs",
    ]
    assert "Nothing returned or shown yet" in p.outputs.value


def test_log_filter_is_css_so_it_works_while_the_kernel_is_busy():
    import re

    p = P.run_panel(finished())
    html = p.log_filter.value
    select = html.split(f'<select id="{p.scope}-log-task">')[1].split("</select>")[0]
    options = dict(re.findall(r'<option value="(\d+)">([^<]+)</option>', select))
    assert {"load_data", "features", "train", "evaluate"} <= set(options.values())
    assert "score" not in options.values()  # no logs, no entry
    k = next(k for k, name in options.items() if name == "features")
    # the task select hides the lines of other sources, the level select quieter lines,
    # both through :has() on the panel's own class (no kernel round trip)
    assert (
        f'.{p.scope}:has(#{p.scope}-log-task option[value="{k}"]:checked) '
        f'.nb2f-log:not([data-k="{k}"]){{display:none}}'
    ) in html
    assert (
        f'.{p.scope}:has(#{p.scope}-log-level option[value="40"]:checked) '
        '.nb2f-log:is([data-lv="10"],[data-lv="20"],[data-lv="30"]){display:none}'
    ) in html
    assert p.scope in p.widget._dom_classes
    assert f'data-lv="30" data-k="{k}"' in p.logs.value  # "dropped 12 rows", a WARNING


def test_live_panel_follows_events_and_stops_at_the_end():
    p = P.RunPanel.live("live-1")
    try:
        assert p._queue.append in events.subscribers()
        evs = sample_events("live-1")
        replay(evs[:13], events.emit)  # up to load_data Completed
        done = 'data-task="load_data" data-state="Completed"'
        deadline = time.monotonic() + 5
        while done not in p.graph.value and time.monotonic() < deadline:
            time.sleep(0.02)
        assert done in p.graph.value
        assert 'data-task="features" data-state="Pending"' in p.graph.value
        # every tab is live, not only the one selected (the kernel is busy: it cannot hear
        # which tab the user looks at)
        assert 'data-task="load_data"' in p.timeline.value
        assert 'data-task="load_data"' in p.table.value
        replay(evs[13:], events.emit)
        assert p.wait(5)
        assert p._queue.append not in events.subscribers()
        assert p.view.state == S.FAILED
        assert 'data-task="evaluate" data-state="Failed"' in p.graph.value
        assert "inconsistent numbers of samples" in p.table.value  # final render: every tab
        assert "Traceback" in p.logs.value
        assert p.progress.value == p.progress.max == 8
        assert P._live["live-1"] is p
        assert P.resolve(p) is p.view and P.resolve(type("FR", (), {"id": "live-1"})()) is p.view
    finally:
        p.stop()


def test_live_updates_are_throttled():
    p = P.RunPanel.live("busy")
    try:
        events.emit("flow_run", "busy", data={"flow_name": "busy"})
        events.emit("flow_state", "busy", data={"state": S.RUNNING})
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 0.6:  # a stream of events far faster than 10/s
            tid = f"t{i}"
            events.emit("task_run", "busy", tid, {"task_name": "work", "upstream": []})
            events.emit("task_state", "busy", tid, {"state": S.RUNNING, "attempt": 1})
            events.emit("task_state", "busy", tid, {"state": S.COMPLETED, "attempt": 1})
            i += 1
        spent = time.monotonic() - t0
        events.emit("flow_state", "busy", data={"state": S.COMPLETED})
        assert p.wait(10)
        assert i > 200
        # one render at start, at most ~10/s while running, one final
        assert p.renders <= spent / p.min_interval + 3
        assert p.progress.value == i
    finally:
        p.stop()


def test_live_panel_ignores_other_runs():
    p = P.RunPanel.live("mine")
    try:
        replay(sample_events("other"), events.emit)
        replay(sample_events("mine", fail=False), events.emit)
        assert p.wait(5)
        assert p.view.state == S.COMPLETED and len(p.view.tasks) == 8
        assert "Failed" not in p.table.value
    finally:
        p.stop()


def test_maybe_attach_needs_a_widget_kernel_and_respects_the_switch(monkeypatch):
    shown = []
    monkeypatch.setattr(P, "_display", shown.append)
    monkeypatch.setenv("NB2FLOW_PANEL", "on")
    assert not P.in_widget_kernel()  # pytest is no kernel
    assert P.maybe_attach("r0") is None and not shown
    monkeypatch.setattr(P, "in_widget_kernel", lambda: True)
    p = P.maybe_attach("r1")
    try:
        assert isinstance(p, P.RunPanel) and shown == [p]
    finally:
        p.stop()
    monkeypatch.setenv("NB2FLOW_PANEL", "off")
    assert P.maybe_attach("r2") is None and len(shown) == 1


def test_maybe_attach_never_raises(monkeypatch):
    monkeypatch.setenv("NB2FLOW_PANEL", "on")
    monkeypatch.setattr(P, "in_widget_kernel", lambda: True)

    def broken(_obj):
        raise RuntimeError("no front end")

    monkeypatch.setattr(P, "_display", broken)
    assert P.maybe_attach("r3") is None


def test_show_a_flow_run_object_without_the_store(monkeypatch):
    from nb2flow.errors import Nb2flowError

    with pytest.raises(Nb2flowError, match="needs a Jupyter kernel"):
        P.show(finished())  # pytest is no kernel
    shown = []
    monkeypatch.setattr(P, "_display", shown.append)
    monkeypatch.setattr(P, "in_widget_kernel", lambda: True)
    view = finished()
    flow_run = type("FlowRun", (), {"id": "not-stored", "view": view})()
    P.show(flow_run)  # a finished run: the static panel, which a saved notebook keeps
    assert len(shown) == 1 and 'data-task="evaluate"' in shown[0].data
    assert "nb2f-static" in shown[0].data
    with pytest.raises(TypeError, match="cannot show int"):
        P.resolve(42)


def test_show_and_browse_stored_runs(monkeypatch):
    shown = []
    monkeypatch.setattr(P, "_display", shown.append)
    monkeypatch.setattr(P, "in_widget_kernel", lambda: True)
    record(sample_events("stored-1"), sample_events("stored-2", fail=False))
    P.show("stored-1")
    assert len(shown) == 1
    assert 'data-task="evaluate" data-state="Failed"' in shown[0].data
    view = P.resolve("stored-2")
    assert view.state == S.COMPLETED and len(view.tasks) == 8

    browser = P.runs()
    ids = [v for _, v in browser.runs.options]
    assert set(ids) == {"stored-1", "stored-2"}
    assert any("duration-prediction" in label for label, _ in browser.runs.options)
    (label,) = [lb for lb, v in browser.runs.options if v == "stored-1"]
    assert "threads" in label and "max_depth=30" in label  # what and how it ran
    assert "Failed" in label and "1 failed" in label
    browser.runs.value = "stored-1"
    assert browser.panel is not None and browser.panel.view.state == S.FAILED
    assert browser.body.children == (browser.panel.widget,)
    assert [v for _, v in browser.flow.options] == ["", "duration-prediction"]


def test_runtime_attaches_a_live_panel_to_a_real_flow(monkeypatch):
    pytest.importorskip("nb2flow.runtime.api")
    import ipykernel  # noqa: F401 - the runtime looks for a panel only inside a kernel

    from nb2flow import flow, task

    shown = []
    monkeypatch.setenv("NB2FLOW_PANEL", "on")
    monkeypatch.setattr(P, "in_widget_kernel", lambda: True)
    monkeypatch.setattr(P, "_display", shown.append)
    calls = []

    @task(retries=1)
    def flaky(x):
        calls.append(x)
        if len(calls) == 1:
            raise ConnectionError("first try fails")
        return x

    @task
    def square(x):
        return x * x

    @task
    def boom(xs):
        raise ValueError("no <good>")

    @task
    def after(v):
        return v

    @flow(name="real-flow")
    def real():
        y = flaky.submit(3)
        squares = square.map([1, 2, 3])
        return after.submit(boom.submit(squares, wait_for=[y]))

    fr = real(return_state=True)
    p = P._live[fr.id]
    assert shown == [p]
    assert p.wait(10)
    states = {
        t.name if t.map_index is None else f"{t.name}[{t.map_index}]": t.state
        for t in p.view.tasks.values()
    }
    assert states == {
        "flaky": S.COMPLETED,
        "square[0]": S.COMPLETED,
        "square[1]": S.COMPLETED,
        "square[2]": S.COMPLETED,
        "boom": S.FAILED,
        "after": S.NOT_RUN,
    }
    assert 'data-task="boom" data-state="Failed"' in p.graph.value
    assert 'data-task="after" data-state="NotRun"' in p.graph.value
    assert 'data-attempt="2"' in p.timeline.value  # the retry is its own bar
    assert "ValueError: no &lt;good&gt;" in p.table.value
    assert "Traceback" in p.logs.value
    assert p.progress.value == p.progress.max == 6


def test_a_broken_render_stops_the_panel_not_the_run(monkeypatch):
    def broken(*_a, **_k):
        raise RuntimeError("render <bug>")

    p = P.RunPanel.live("broken-run")
    try:
        monkeypatch.setattr(p, "render", broken)
        replay(sample_events("broken-run"), events.emit)  # emitting never raises
        assert p.wait(5)
        assert p.error == "RuntimeError: render <bug>"
        assert "panel error: RuntimeError: render &lt;bug&gt;" in p.header.value
        assert p._queue.append not in events.subscribers()
    finally:
        p.stop()


class _Handle:
    """Stands for IPython's DisplayHandle: records what the output is updated to."""

    def __init__(self) -> None:
        self.updates: list[dict] = []

    def update(self, obj: dict, raw: bool = False) -> None:
        assert raw
        self.updates.append(obj)


def test_the_output_becomes_the_static_final_panel_when_the_run_ends():
    p = P.RunPanel.live("to-save")
    p.handle = _Handle()
    try:
        replay(sample_events("to-save"), events.emit)
        assert p.wait(5)
        (final,) = p.handle.updates
        html = final["text/html"]
        assert "nb2f-static" in html and 'data-task="evaluate" data-state="Failed"' in html
        assert "inconsistent numbers of samples" in html and "Traceback" in html
        for tab in P.TAB_TITLES:  # every tab, as radio buttons and panes
            assert f">{tab}</label>" in html and f'data-tab="{tab}"' in html
        assert "<script" not in html  # nothing to run: it shows wherever HTML does
        assert "Failed" in final["text/plain"]
        assert p.finalized and p.widget.comm is None  # the widgets are closed
    finally:
        p.stop()
