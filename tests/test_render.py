"""Layout and rendering of run views: SVG graph and timeline, tasks table, logs, report page."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import pytest
from sample_run import sample_events

from nb2flow.jupyter import render as R
from nb2flow.runtime.core import states as S
from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.model import RunView, format_duration

SVG = "{http://www.w3.org/2000/svg}"


class Builder:
    """Build a RunView by applying events, as the panel does live."""

    def __init__(self, fid: str = "f1", flow_name: str = "demo", **params: str) -> None:
        self.view = RunView(fid)
        self.t = 100.0
        self.ev("flow_run", None, flow_name=flow_name, run_name="calm-heron", parameters=params)
        self.ev("flow_state", None, state=S.RUNNING)

    def ev(self, kind: str, tid: str | None, dt: float = 0.1, **data: object) -> None:
        self.t += dt
        self.view.apply(RunEvent(kind, self.t, self.view.id, tid, dict(data)))

    def task(self, tid: str, name: str, up: dict[str, list[str]] | None = None, idx=None):
        up = up or {}
        self.ev("task_run", tid, task_name=name, task_key=name, upstream=list(up),
                edge_names=up, map_index=idx)  # fmt: skip

    def state(self, tid: str, state: str, attempt: int = 1, dt: float = 0.1, **kw: object):
        self.ev("task_state", tid, dt, state=state, attempt=attempt, **kw)

    def run_ok(self, tid: str, dt: float = 0.1) -> None:
        self.state(tid, S.RUNNING)
        self.state(tid, S.COMPLETED, dt=dt)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # fails on any unescaped name


def nodes(svg: str) -> dict[str, ET.Element]:
    return {
        g.get("data-task"): g for g in parse(svg).iter(f"{SVG}g") if g.get("class") == "nb2f-node"
    }


def edges(svg: str) -> list[ET.Element]:
    return [g for g in parse(svg).iter(f"{SVG}g") if g.get("class") == "nb2f-edge"]


def path_points(d: str, step: float = 1.0) -> list[tuple[float, float]]:
    """Points every ``step`` pixels or so along an SVG path of M, L and C commands."""
    tokens = re.findall(r"[MLC]|-?[0-9.]+", d)
    out: list[tuple[float, float]] = []
    at = (0.0, 0.0)
    i = 0
    while i < len(tokens):
        cmd = tokens[i]
        n = {"M": 1, "L": 1, "C": 3}[cmd]
        nums = [float(t) for t in tokens[i + 1 : i + 1 + 2 * n]]
        pts = [(nums[j], nums[j + 1]) for j in range(0, 2 * n, 2)]
        i += 1 + 2 * n
        if cmd == "M":
            at = pts[0]
            out.append(at)
            continue
        if cmd == "L":
            ctrl = [at, at, pts[0], pts[0]]
        else:
            ctrl = [at, *pts]
        length = sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in itertools.pairwise(ctrl))
        k = max(int(length / step), 1)
        for s in range(1, k + 1):
            t, u = s / k, 1 - s / k
            w = (u**3, 3 * u * u * t, 3 * u * t * t, t**3)
            out.append(tuple(sum(w[j] * ctrl[j][c] for j in range(4)) for c in (0, 1)))
        at = pts[-1]
    return out


def assert_edges_clear(svg: str) -> int:
    """No edge of the drawn graph passes through an edge label (as drawn: its text's
    position, lines and the width a character takes) or through a node it does not end at.
    The number of labels drawn."""
    root = parse(svg)
    labels = []
    for t in root.iter(f"{SVG}text"):
        if t.get("class") == "nb2f-edge-label":
            lines = [s.text for s in t]
            x, y = float(t.get("x")), float(t.get("y"))
            w = max(len(line) for line in lines) * R.CHAR_W
            labels.append(((x, y - 10, x + w, y + (len(lines) - 1) * R.LINE_H + 3), lines))
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "nb2f-node":
            r = g.find(f"{SVG}rect")
            x, y = float(r.get("x")), float(r.get("y"))
            boxes[g.get("data-id")] = (x, y, x + float(r.get("width")), y + float(r.get("height")))
    for e in edges(svg):
        points = path_points(e.find(f"{SVG}path").get("d"))
        for box, lines in labels:
            inside = [p for p in points if box[0] < p[0] < box[2] and box[1] < p[1] < box[3]]
            assert not inside, (e.get("data-src"), e.get("data-dst"), lines, inside[:3])
        for nid, box in boxes.items():
            if nid in (e.get("data-src"), e.get("data-dst")):
                continue
            inside = [p for p in points if box[0] < p[0] < box[2] and box[1] < p[1] < box[3]]
            assert not inside, (e.get("data-src"), e.get("data-dst"), nid, inside[:3])
    return len(labels)


def diamond() -> Builder:
    b = Builder(max_depth="30")
    b.task("a", "load")
    b.task("b", "features", {"a": ["df"]})
    b.task("c", "split", {"a": ["df", "cols"]})
    b.task("d", "train", {"b": ["X"], "c": ["y"]})
    b.task("e", "publish", {"d": ["model"]})
    b.run_ok("a")
    b.run_ok("b")
    b.state("c", S.RUNNING)
    b.state(
        "c", S.RETRYING, error="IOError: flaky disk", traceback="Traceback-c\nIOError: flaky disk"
    )
    b.state("c", S.RUNNING, attempt=2, dt=0.3)
    b.state("c", S.COMPLETED, attempt=2)
    b.state("d", S.RUNNING)
    b.state(
        "d",
        S.FAILED,
        error="ValueError: bad <input>",
        traceback="Traceback...\nValueError: bad <input>",
    )
    b.state("e", S.NOT_RUN)
    b.ev(
        "flow_state",
        None,
        state=S.FAILED,
        error="ValueError: bad <input>",
        traceback="Traceback-flow\nValueError: bad <input>",
    )
    return b


def test_graph_has_every_node_and_edge_coloured_by_state():
    run = diamond().view
    svg = R.graph_svg(run)
    ns = nodes(svg)
    assert set(ns) == {"load", "features", "split", "train", "publish"}
    for name, g in ns.items():
        t = next(t for t in run.tasks.values() if t.name == name)
        assert g.get("data-state") == t.state
        rect = g.find(f"{SVG}rect")
        fill, stroke, _, _ = S.COLOURS[t.state]
        assert (rect.get("fill"), rect.get("stroke")) == (fill, stroke)
    assert ns["train"].find(f"{SVG}rect").get("fill") == "#ef4444"  # failed is red
    # NotRun is hollow and dashed, unlike Pending
    publish = ns["publish"].find(f"{SVG}rect")
    assert publish.get("stroke-dasharray") and publish.get("fill") == "#ffffff"
    pairs = {(e.get("data-src"), e.get("data-dst")): e.get("data-names") for e in edges(svg)}
    assert pairs == {
        ("a", "b"): "df",
        ("a", "c"): "df, cols",
        ("b", "d"): "X",
        ("c", "d"): "y",
        ("d", "e"): "model",
    }
    # names are hoverable (<title>) and, for small graphs, written on the edge
    titles = [e.find(f"{SVG}title").text for e in edges(svg)]
    assert "load \u2192 split: df, cols" in titles
    assert any("".join(t.itertext()) == "df, cols" for t in parse(svg).iter(f"{SVG}text"))


def test_node_labels_carry_duration_and_attempts():
    svg = R.graph_svg(diamond().view)
    texts = {
        g.get("data-task"): [t.text for t in g.iter(f"{SVG}text")] for g in nodes(svg).values()
    }
    assert texts["features"] == ["features", "Completed \u00b7 100ms"]
    assert texts["split"][1].startswith("Completed") and "try 2" in texts["split"][1]
    assert texts["publish"] == ["publish", "NotRun"]
    tip = nodes(svg)["train"].find(f"{SVG}title").text
    assert "error: ValueError: bad <input>" in tip


def test_layout_layers_follow_dependencies_without_overlap():
    run = diamond().view
    lay = R.layout(run)
    pos = {n.id: n for n in lay.nodes.values()}
    for e in lay.edges:
        assert pos[e.src].layer < pos[e.dst].layer
        assert pos[e.src].x + R.NODE_W < pos[e.dst].x
    assert pos["b"].layer == pos["c"].layer == 1
    assert abs(pos["b"].y - pos["c"].y) >= R.NODE_H  # same layer, stacked apart
    for n in lay.nodes.values():
        assert 0 <= n.x and n.x + R.NODE_W <= lay.width
        assert 0 <= n.y and n.y + R.NODE_H <= lay.height


def test_barycentre_untangles_crossing_edges():
    b = Builder()
    b.task("a1", "a1")
    b.task("a2", "a2")
    b.task("b2", "b2", {"a2": []})  # created first, but its parent is the lower node
    b.task("b1", "b1", {"a1": []})
    lay = R.layout(b.view)
    n = lay.nodes
    assert (n["a1"].y < n["a2"].y) == (n["b1"].y < n["b2"].y)


def test_names_are_escaped_everywhere():
    evil = '<script>alert("x")</script>&'
    b = Builder(flow_name=evil, p=evil)
    b.task("a", evil)
    b.task("b", "ok", {"a": [evil]})
    b.state("a", S.RUNNING)
    b.ev("log", "a", level=40, levelname="ERROR", message=evil)
    b.state("a", S.FAILED, error=evil, traceback=evil)
    page = R.report_html(b.view)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    for part in (R.graph_svg(b.view), R.timeline_svg(b.view)):
        parse(part)
    for part in (R.header_html(b.view), R.tasks_table_html(b.view), R.logs_html(b.view)):
        assert "<script>" not in part and "&lt;script&gt;" in part
        ET.fromstring(f"<div>{part.replace('&nbsp;', ' ')}</div>")  # well-formed


def test_mapped_tasks_collapse_into_one_node_with_count():
    b = Builder()
    b.task("src", "source")
    for i in range(600):
        b.task(f"m{i}", "square", {"src": ["xs"]}, idx=i)
    for i in range(600):
        b.task(f"d{i}", "double", {f"m{i}": ["y"]}, idx=i)
    b.task("sum", "total", {f"d{i}": ["z"] for i in range(600)})
    b.run_ok("src")
    for i in range(600):
        b.state(f"m{i}", S.RUNNING, dt=0.001)
        b.state(f"m{i}", S.FAILED if i == 7 else S.COMPLETED, dt=0.001, error="E")
        if i == 7:
            b.state(f"d{i}", S.NOT_RUN, dt=0.001)
        else:
            b.run_ok(f"d{i}", dt=0.001)
    svg = R.graph_svg(b.view)
    ns = nodes(svg)
    assert set(ns) == {"source", "square", "double", "total"}
    # most of it ran: Completed colour, the label tells what did not
    assert ns["double"].get("data-state") == S.COMPLETED
    assert "\u00d7600 \u00b7 599 ok \u00b7 1 not run" in [
        t.text for t in ns["double"].iter(f"{SVG}text")
    ]
    assert ns["square"].get("data-count") == "600"
    assert ns["square"].get("data-state") == S.FAILED  # the worst member shows
    assert "\u00d7600 \u00b7 599 ok \u00b7 1 failed" in [
        t.text for t in ns["square"].iter(f"{SVG}text")
    ]
    assert parse(svg).get("data-collapsed") == "true"
    assert len(edges(svg)) == 3
    # a small map stays expanded, one node per item
    small = Builder()
    small.task("src", "source")
    for i in range(3):
        small.task(f"m{i}", "square", {"src": ["xs"]}, idx=i)
    assert set(nodes(R.graph_svg(small.view))) == {"source", "square[0]", "square[1]", "square[2]"}


def test_many_distinct_submits_group_by_name_even_when_that_makes_a_loop():
    b = Builder()
    prev = None
    for i in range(300):  # a chain alternating between two task names
        tid = f"t{i}"
        b.task(tid, "even" if i % 2 == 0 else "odd", {prev: ["x"]} if prev else {})
        prev = tid
    svg = R.graph_svg(b.view, max_nodes=60)
    ns = nodes(svg)
    assert set(ns) == {"even", "odd"}
    assert {n.get("data-count") for n in ns.values()} == {"150"}


def test_group_state():
    assert R.group_state({S.COMPLETED: 3, S.FAILED: 1}) == S.FAILED
    assert R.group_state({S.COMPLETED: 3, S.PENDING: 1}) == S.RUNNING
    assert R.group_state({S.PENDING: 4}) == S.PENDING
    assert R.group_state({S.CACHED: 2}) == S.CACHED
    assert R.group_state({S.CACHED: 2, S.COMPLETED: 1}) == S.COMPLETED
    # something ran: Completed (the label says "1 not run"); nothing ran: NotRun
    assert R.group_state({S.NOT_RUN: 2, S.COMPLETED: 1}) == S.COMPLETED
    assert R.group_state({S.NOT_RUN: 2}) == S.NOT_RUN
    assert R.group_state({S.NOT_RUN: 2, S.CANCELLED: 1}) == S.CANCELLED


def test_timeline_bars_show_states_and_retries():
    run = diamond().view
    svg = R.timeline_svg(run)
    root = parse(svg)
    rows = {g.get("data-task"): g for g in root.iter(f"{SVG}g") if g.get("class") == "nb2f-row"}
    assert list(rows) == ["load", "features", "split", "train", "publish"]
    split_bars = [r for r in rows["split"].iter(f"{SVG}rect")]
    assert [(r.get("data-attempt"), r.get("data-state")) for r in split_bars] == [
        ("1", S.RETRYING),
        ("2", S.COMPLETED),
    ]
    assert float(split_bars[0].get("x")) < float(split_bars[1].get("x"))
    assert len([ln for ln in rows["split"].iter(f"{SVG}line")]) == 1  # the wait before retry
    train = list(rows["train"].iter(f"{SVG}rect"))
    assert [r.get("fill") for r in train] == [S.COLOURS[S.FAILED].fill]
    assert "bad &lt;input&gt;" in svg or "bad <input>" in ET.tostring(train[0], encoding="unicode")
    publish = list(rows["publish"].iter(f"{SVG}rect"))
    assert publish[0].get("data-state") == S.NOT_RUN and publish[0].get("stroke-dasharray")
    # bars are ordered in time as the tasks ran
    xs = [float(next(rows[n].iter(f"{SVG}rect")).get("x")) for n in ("load", "features", "train")]
    assert xs == sorted(xs)


def test_timeline_of_a_running_task_reaches_now():
    b = Builder()
    b.task("a", "a")
    b.state("a", S.RUNNING)
    start = b.t
    svg = R.timeline_svg(b.view, now=start + 10)
    bar = next(r for r in parse(svg).iter(f"{SVG}rect") if r.get("class") == "nb2f-bar")
    assert bar.get("data-state") == S.RUNNING
    assert float(bar.get("width")) > 500  # nearly the whole 960 - 190 px plot


def test_tasks_table_rows_errors_and_limit():
    run = diamond().view
    table = R.tasks_table_html(run)
    rows = re.findall(r'<tr class="nb2f-tr" data-task="([^"]+)" data-state="([^"]+)"', table)
    assert rows == [(t.name, t.state) for t in run.tasks.values()]
    assert "ValueError: bad &lt;input&gt;" in table
    assert "retried after: IOError: flaky disk" in table
    # NotRun never started: no start, duration or attempts
    publish = table.split('data-task="publish"')[1].split("</tr>")[0]
    assert re.findall(r"<td>([^<]*)</td>", publish)[1:4] == ["", "", ""]
    limited = R.tasks_table_html(run, limit=2)
    kept = re.findall(r'data-task="([^"]+)" data-state', limited)
    assert kept == ["load", "train"]  # the failed row is kept, then the earliest
    assert "3 more task runs not shown" in limited


def test_logs_levels_filter_and_traceback():
    b = diamond()
    b.ev("log", "a", level=20, levelname="INFO", message="loaded 10 rows")
    b.ev("log", "d", level=30, levelname="WARNING", message="few rows")
    b.ev("log", None, level=10, levelname="DEBUG", message="flow debug")
    run = b.view
    out = R.logs_html(run)
    levels = re.findall(r'class="nb2f-log nb2f-lvl-(\w+)" data-level="(\w+)"', out)
    assert ("error", "ERROR") in levels and ("warning", "WARNING") in levels
    assert ("debug", "DEBUG") in levels
    assert out.count("Traceback...") == 1  # the failed task's traceback, once
    only_d = R.logs_html(run, task_run_id="d")
    assert "few rows" in only_d and "Traceback..." in only_d and "loaded 10 rows" not in only_d
    warn = R.logs_html(run, min_level=30)
    assert "flow debug" not in warn and "loaded 10 rows" not in warn and "few rows" in warn
    assert "older records not shown" in R.logs_html(run, limit=1)
    # the retried attempt's traceback, as a warning when it was retried
    retry = [ln for ln in out.split("</div>") if "Traceback-c" in ln]
    assert len(retry) == 1 and 'data-level="WARNING"' in retry[0]
    assert "attempt 1 failed, retried:" in retry[0]
    # the flow failed because of train: its traceback is not repeated
    assert "Traceback-flow" not in out
    # a traceback the runtime already logged is not repeated
    b.ev(
        "log",
        "d",
        level=40,
        levelname="ERROR",
        message="task failed\nTraceback...\nValueError: bad <input>",
    )
    assert R.logs_html(b.view).count("Traceback...") == 1


def test_flow_traceback_shows_when_no_task_explains_it():
    b = Builder()
    b.task("a", "a")
    b.run_ok("a")
    b.ev(
        "flow_state",
        None,
        state=S.FAILED,
        error="KeyError: 'x'",
        traceback="Tb-flow\nKeyError: 'x'",
    )
    out = R.logs_html(b.view)
    assert "Tb-flow" in out and 'data-task=""' in out


def test_long_chains_are_laid_out_top_to_bottom():
    b = Builder()
    prev = None
    for i in range(9):
        b.task(f"t{i}", f"step_{i}", {prev: ["v"]} if prev else {})
        prev = f"t{i}"
    lay = R.layout(b.view)
    assert lay.direction == "TB" and lay.width < 400
    ys = [lay.nodes[f"t{i}"].y for i in range(9)]
    assert ys == sorted(ys) and len(set(ys)) == 9
    svg = R.graph_svg(b.view)
    assert parse(svg).get("data-direction") == "TB"
    assert len(edges(svg)) == 8
    assert R.layout(b.view, direction="LR").width > 1040
    assert R.layout(diamond().view).direction == "LR"  # short graphs read left to right


def test_header_progress_and_elapsed():
    run = diamond().view
    head = R.header_html(run)
    assert "demo" in head and "calm-heron" in head and 'data-state="Failed"' in head
    assert "max_depth=30" in head
    assert "<b>train</b> Failed: ValueError: bad &lt;input&gt;" in head
    assert R.progress(run) == (5, 5)
    assert run.elapsed() == pytest.approx(run.end - run.start)
    live = Builder()
    live.task("a", "a")
    assert R.progress(live.view) == (0, 1)
    assert live.view.elapsed(now=live.view.start + 3) == pytest.approx(3)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.0042, "4.2ms"),
        (0.42, "420ms"),
        (1.25, "1.2s"),
        (75, "1m 15s"),
        (3725, "1h 02m"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_report_is_self_contained_and_complete():
    run = RunView.from_events("sample-run", sample_events())
    page = R.report_html(run)
    assert page.startswith("<!DOCTYPE html>")
    urls = re.findall(r"https?://[^\s\"'<>]+", page)
    assert set(urls) <= {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert not re.search(r"<(link|img|iframe)\b|\s(src|href)=", page)
    for section in ('id="graph"', 'id="timeline"', 'id="tasks"', 'id="logs"'):
        assert section in page
    assert page.count('class="nb2f-node"') == len(run.tasks)
    assert "inconsistent numbers of samples" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_timeline_ticks_fit_the_span():
    ticks = lambda v: [t.text for t in parse(R.timeline_svg(v)).iter(f"{SVG}text")][:4]  # noqa: E731
    b = Builder()
    b.ev("task_run", "a", dt=0.0, task_name="a", upstream=[])
    b.state("a", S.RUNNING, dt=0.0)
    b.state("a", S.COMPLETED, dt=0.0008)
    b.ev("flow_state", None, dt=0.0, state=S.COMPLETED)
    assert ticks(b.view)[:3] == ["0", "0.2ms", "0.4ms"]  # 0.8ms span
    b = Builder()
    b.task("a", "a")
    b.state("a", S.RUNNING, dt=0.0)
    b.state("a", S.COMPLETED, dt=7.0)
    b.ev("flow_state", None, dt=0.0, state=S.COMPLETED)
    assert ticks(b.view)[:3] == ["0", "1s", "2s"]


def test_empty_run_renders():
    run = RunView("empty")
    for part in (R.graph_svg(run), R.timeline_svg(run), R.tasks_table_html(run), R.logs_html(run)):
        assert "nb2f-empty" in part
    assert "flow" in R.header_html(run) and R.progress(run) == (0, 0)


def test_edge_labels_wrap_and_keep_clear_of_nodes_and_arrowheads():
    names = ["X_train", "y_train", "X_val", "y_val", "dv", "train_dicts", "categorical"]
    assert R.label_lines(names) == ["X_train, y_train,", "X_val, y_val, dv,", "train_dicts +1 more"]
    assert R.label_lines(["a_name_much_longer_than_one_line_holds"]) == [
        "a_name_much_longer_th\u2026"
    ]
    for direction in ("LR", "TB"):
        b = Builder()
        b.task("a", "load")
        b.task("b", "features", {"a": names})
        b.task("c", "train", {"b": ["X_train"], "a": ["df_train", "df_val"]})  # skips a layer
        lay = R.layout(b.view, direction=direction)
        boxes = [(n.x, n.y, n.x + R.NODE_W, n.y + R.NODE_H) for n in lay.nodes.values()]
        assert {e.dst for e in lay.edges if e.lines} == {"b", "c"}  # a label into each node
        for e in (e for e in lay.edges if e.lines):  # (one that would overlap is not drawn)
            box = R.label_box(e)
            left, w = box[0], box[2] - box[0]
            for n in boxes:  # nodes, and the arrowhead at the edge of the node entered
                grown = (n[0] - 8, n[1] - 8, n[2] + 8, n[3] + 8)
                apart = box[2] <= grown[0] or grown[2] <= box[0] or box[3] <= grown[1]
                assert apart or grown[3] <= box[1], (direction, e.src, e.dst, e.lines)
            assert 0 <= left and left + w <= lay.width and box[3] <= lay.height
        svg = R.graph_svg(b.view, direction=direction)
        assert_edges_clear(svg)
        (long_edge,) = [e for e in edges(svg) if e.get("data-dst") == "b"]
        assert long_edge.find(f"{SVG}title").text == f"load \u2192 features: {', '.join(names)}"
        assert len(long_edge.find(f"{SVG}text")) == 3  # three lines of tspans


def test_outputs_and_results_are_in_the_report_without_any_script():
    import base64

    b = Builder()
    b.task("a", "plot")
    b.run_ok("a")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    from nb2flow.runtime.core import events

    for kind, bundle in (
        ("image", {"text/plain": "<fig>", "image/png": png}),
        ("markdown", {"text/plain": "**x** <b>y</b>", "text/markdown": "**x** <b>y</b>"}),
    ):
        b.view.apply(events.artifact(b.view.id, "a", kind=kind, name="curve", bundle=bundle))
    b.state("a", S.COMPLETED, result={"type": "float", "repr": "6.123456789"})
    b.ev("flow_state", None, state=S.COMPLETED, result={"type": "dict", "len": 1,
         "items": {"rmse": {"type": "float", "repr": "6.123456789"}}})  # fmt: skip
    page = R.report_html(b.view)
    assert "script-src" not in page and "<script" not in page  # default-src 'none': no script
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page
    assert "<strong>x</strong> &lt;b&gt;y&lt;/b&gt;" in page  # markdown, its raw HTML escaped
    assert "6.123456789" in page and 'class="nb2f-key">rmse</span>' in page
    assert "started 1970-01-01" in page  # dates: a run's day is part of when it ran


def test_a_cached_task_names_the_run_its_value_came_from_in_every_tab():
    source = "0b5e6f3c-1111-4222-8333-944455556666"
    b = Builder()
    b.task("u", "read")
    b.task("a", "load", {"u": ["path"]})  # an edge drawn before the nodes
    b.run_ok("u")
    b.state("a", S.CACHED, cached_from=source)
    names = {source: "brave-otter"}
    for tab in ("Graph", "Tasks"):
        pane = R.pane_html(b.view, tab, names=names)
        assert "brave-otter" in pane and f">{source}<" not in pane, tab
    for known, shown in ((names, "brave-otter"), (None, "0b5e6f3c")):  # no name: the short id
        svg = parse(R.graph_svg(b.view, names=known))
        (node,) = [g for g in svg.iter(f"{SVG}g") if g.get("data-task") == "load"]
        assert node.find(f"{SVG}title").text.endswith(f"cached from run {shown}")


def test_labels_of_edges_converging_on_one_node_do_not_overlap_each_other():
    for direction in ("LR", "TB"):
        b = Builder()
        b.task("f", "features")
        for i in range(9):
            b.task(f"s{i}", f"score[{i}]")
        up = {"f": ["X_train", "y_train", "X_val", "y_val", "dv", "train_dicts"]}
        b.task("t", "slow_train", {**up, **{f"s{i}": ["parts"] for i in range(9)}})
        lay = R.layout(b.view, direction=direction)
        boxes = [R.label_box(e) for e in lay.edges if e.lines]
        for i, a in enumerate(boxes):
            for c in boxes[i + 1 :]:
                assert a[2] <= c[0] or c[2] <= a[0] or a[3] <= c[1] or c[3] <= a[1], direction
        drawn = {e.src for e in lay.edges if e.lines}
        assert "f" in drawn and len(drawn) >= 2, (direction, drawn)  # the most names first
        svg = R.graph_svg(b.view, direction=direction)
        assert_edges_clear(svg)
        titles = {e.get("data-src"): e.find(f"{SVG}title").text for e in edges(svg)}
        assert titles["s8"] == "score[8] \u2192 slow_train: parts"  # undrawn: still the tooltip


def wide_run() -> Builder:
    """The record test's flow: six names and nine mapped parts converge on one task, which
    fans out to two."""
    b = Builder()
    b.task("f", "features")
    for i in range(9):
        b.task(f"s{i}", "score", idx=i)
    names = ["X_train", "y_train", "X_val", "y_val", "dv", "train_dicts"]
    b.task("t", "slow_train", {"f": names, **{f"s{i}": ["parts"] for i in range(9)}})
    b.task("m", "summarize", {"t": ["rmse"]})
    b.task("r", "report", {"t": ["best_rmse"]})
    b.task("p", "publish", {"r": ["text"]})
    b.task("z", "archive", {"f": ["X_train"], "p": ["text"]})  # spans three layers
    return b


def test_edges_never_cross_labels_or_nodes_on_a_wide_graph():
    for direction in ("auto", "LR", "TB"):
        view = wide_run().view
        lay = R.layout(view, direction=direction)
        assert lay.direction == ("TB" if direction == "auto" else direction)
        drawn = {(e.src, e.dst) for e in lay.edges if e.lines}
        # every label finds a place: the converging ones by their sources, the two of the
        # fan-out by the tasks they enter
        assert drawn == {(e.src, e.dst) for e in lay.edges}, (direction, drawn)
        assert assert_edges_clear(R.graph_svg(view, direction=direction)) == len(lay.edges)


def lanes_run(b: Builder, n: int, start: int = 0) -> None:
    """``n`` more tasks named ``work``, each Running then Completed (every 50th Failed, every
    70th retried once, every 90th NotRun), created and run one after the other."""
    for i in range(start, start + n):
        tid = f"w{i}"
        b.task(tid, "work")
        if i % 90 == 89:
            b.state(tid, S.NOT_RUN, dt=0.01)
            continue
        b.state(tid, S.RUNNING, dt=0.01)
        if i % 70 == 69:
            b.state(tid, S.RETRYING, dt=0.02, error="flaky")
            b.state(tid, S.RUNNING, attempt=2, dt=0.05)
        b.state(tid, S.FAILED if i % 50 == 49 else S.COMPLETED, dt=0.02)


def bars(svg: str) -> dict[str, list[tuple[float, float, str, int]]]:
    """row label -> (x, right, state, task runs) of each bar in it."""
    out: dict[str, list[tuple[float, float, str, int]]] = {}
    for g in parse(svg).iter(f"{SVG}g"):
        if g.get("class") == "nb2f-row":
            out[g.get("data-task")] = [
                (float(r.get("x")), float(r.get("x")) + float(r.get("width")),
                 r.get("data-state"), int(r.get("data-count") or 1))
                for r in g.iter(f"{SVG}rect")
            ]  # fmt: skip
    return out


def test_a_grouped_timeline_draws_what_is_visible_not_every_finished_task():
    drawn = {}
    for n in (600, 6000):
        b = Builder()
        lanes_run(b, n)
        b.task("x", "work")
        b.state("x", S.RUNNING)  # one still running: drawn as its own bar
        svg = R.timeline_svg(b.view, now=b.t + 1)
        (row,) = bars(svg).values()
        counted: dict[str, int] = {}
        for _, _, state, runs in row:
            counted[state] = counted.get(state, 0) + runs
        failed = sum(1 for i in range(n) if i % 50 == 49 and i % 90 != 89)
        notrun = sum(1 for i in range(n) if i % 90 == 89)
        retried = sum(1 for i in range(n) if i % 70 == 69 and i % 90 != 89)
        # every task run is in a bar's count (a retried one in a Retrying bar too) ...
        assert counted == {S.COMPLETED: n - failed - notrun, S.FAILED: failed,
                           S.NOT_RUN: notrun, S.RETRYING: retried, S.RUNNING: 1}, counted  # fmt: skip
        drawn[n] = len(row)
        # ... and no two bars of one state start within a pixel of each other
        for state in counted:
            xs = sorted(x for x, _, s, _ in row if s == state)
            assert all(b2 >= a2 + 1 for a2, b2 in itertools.pairwise(xs)), state
    # ten times the task runs: not ten times the bars (at most about one per pixel)
    assert drawn[6000] <= 3 * 770 and drawn[6000] < 5 * drawn[600], drawn


def test_a_grouped_timeline_drawn_as_the_run_goes_covers_every_task_run():
    """Rendered between events, as the live panel does, and rendered once at the end: the
    same task runs counted, each finished one's time covered by a bar of its state."""
    live = Builder()
    for k in range(10):
        lanes_run(live, 150, start=150 * k)
        R.timeline_svg(live.view, now=live.t)
    fresh = Builder()
    lanes_run(fresh, 1500)
    for view in (live.view, fresh.view):
        view.end = max(t.end for t in view.tasks.values())
        (row,) = bars(R.timeline_svg(view)).values()
        t0 = view.start
        scale = (960 - 190 - R.PAD) / (view.end - t0)
        for t in view.tasks.values():
            for a, b, outcome, _ in R.attempt_segments(t, view.end):
                state = outcome if outcome in S.COLOURS else S.RUNNING
                x0, x1 = 190 + (a - t0) * scale, 190 + (b - t0) * scale
                assert any(
                    s == state and x - 0.1 <= x0 and x1 <= right + 0.1 for x, right, s, _ in row
                ), (t.id, state, x0, x1)
        done = sum(1 for t in view.tasks.values() if t.state == S.COMPLETED)
        assert sum(runs for _, _, s, runs in row if s == S.COMPLETED) == done
