"""Pure rendering of a :class:`~nb2flow.runtime.core.model.RunView`: graph and timeline as inline
SVG, tasks table and logs as HTML, and the whole self-contained report page.

Every function here takes a run view and returns text; nothing touches widgets, files or
the network, so the live panel, ``show()`` and ``nb2flow report`` share one renderer and the
tests can check the output directly. Every name that comes from a run (flow, task, parameter,
variable, log text) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nb2flow.runtime.core import states as S
from nb2flow.runtime.core.model import (
    LogView,
    RunView,
    TaskRunView,
    describe_result,
    format_duration,
    progress_text,
)

NODE_W, NODE_H = 160, 46
GAP_X, GAP_Y, PAD = 76, 18, 12
#: gaps of the top-to-bottom layout (between nodes of a layer, between layers)
TB_GAP_X, TB_GAP_Y = 22, 46


def esc(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def fmt_clock(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int((ts % 1) * 1000):03d}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def ran(t: TaskRunView) -> bool:
    """Whether the task run ever started (Cached, NotRun and early Cancelled ones never do)."""
    return any(state == S.RUNNING for state, _, _ in t.history)


def progress(run: RunView) -> tuple[int, int]:
    """(finished task runs, known task runs)."""
    done = sum(1 for t in run.tasks.values() if t.state in S.FINAL_STATES)
    return done, len(run.tasks)


# --------------------------------------------------------------------------- grouping


def group_state(counts: dict[str, int]) -> str:
    """One state standing for a group of task runs: the most urgent thing in it (a failure,
    then work in progress); a finished group with some successes counts as Completed (its
    label and state bar tell the rest), NotRun or Cancelled only when nothing in it ran."""
    total = sum(counts.values())
    for s in (S.CRASHED, S.TIMED_OUT, S.FAILED, S.RUNNING, S.RETRYING):
        if counts.get(s):
            return s
    if counts.get(S.PENDING):
        return S.RUNNING if counts[S.PENDING] < total else S.PENDING
    if counts.get(S.CACHED) == total:
        return S.CACHED
    if counts.get(S.COMPLETED) or counts.get(S.CACHED):
        return S.COMPLETED
    for s in (S.CANCELLED, S.NOT_RUN):
        if counts.get(s):
            return s
    return S.PENDING


def group_tasks(run: RunView, max_nodes: int) -> dict[str, str]:
    """Map every task run id to a node id. Small runs: one node per task run. Larger runs:
    the items of each ``.map`` call become one node; if that is still more than
    ``max_nodes``, every task name becomes one node."""
    tasks = run.tasks
    if len(tasks) <= max_nodes:
        return {tid: tid for tid in tasks}
    out: dict[str, str] = {}
    current_map: dict[str, str] = {}  # task name -> node id of its latest map call
    for tid, t in tasks.items():
        if t.map_index is None:
            out[tid] = tid
            continue
        gid = current_map.get(t.name)
        if gid is None or t.map_index == 0:
            gid = current_map[t.name] = f"map:{t.name}:{tid}"
        out[tid] = gid
    if len(set(out.values())) > max_nodes:
        out = {tid: f"name:{t.name}" for tid, t in tasks.items()}
    return out


@dataclass
class Node:
    id: str
    label: str
    tasks: list[TaskRunView]
    state: str = S.PENDING
    counts: dict[str, int] = field(default_factory=dict)
    layer: int = 0
    order: float = 0.0
    x: float = 0.0
    y: float = 0.0

    @property
    def grouped(self) -> bool:
        return len(self.tasks) > 1 or self.id.startswith(("map:", "name:"))

    @property
    def duration(self) -> float | None:
        starts = [t.start for t in self.tasks if t.start is not None]
        if not starts:
            return None
        ends = [t.end if t.end is not None else t.start for t in self.tasks if t.start is not None]
        return max(ends) - min(starts)


@dataclass
class Edge:
    src: str
    dst: str
    names: list[str]
    #: the label as drawn: a few lines of names, elided (the full list is the tooltip)
    lines: list[str] = field(default_factory=list)
    #: the label's anchor (LR: centre of its first line; TB: start of its first line)
    label_x: float = 0.0
    label_y: float = 0.0
    #: the curve, as SVG path data
    path: str = ""


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float
    collapsed: bool
    direction: str = "LR"
    #: the gap between layers (wider when edge labels need room)
    gap: float = GAP_X


#: edge labels: characters per line, lines at most, and the size a character and a line
#: take at font-size 10 (generous, so a label never reaches a node or an arrowhead)
LABEL_CHARS, LABEL_LINES, CHAR_W, LINE_H = 22, 3, 6.4, 12
#: room kept clear between a label and the nodes (arrowheads) on either side of its gap
ARROW_ROOM = 14


def label_lines(names: list[str], chars: int = LABEL_CHARS, lines: int = LABEL_LINES) -> list[str]:
    """The names of an edge on at most ``lines`` lines of at most ``chars`` characters: a
    name too long is cut with an ellipsis, names that do not fit end in ``+N more``."""
    out: list[str] = []
    current = ""
    for i, name in enumerate(names):
        name = _short(name, chars)
        piece = name if not current else f"{current}, {name}"
        if len(piece) <= chars:
            current = piece
            continue
        out.append(current + ",")
        current = name
        if len(out) == lines - 1:  # the last line: what fits, then how many are left
            rest = len(names) - i
            tail = f" +{rest - 1} more" if rest > 1 else ""
            if rest > 1 and len(current) + len(tail) > chars:
                current = _short(current, chars - len(tail))
            out.append(current + tail)
            return out
    if current:
        out.append(current)
    return out


def layout(
    run: RunView, max_nodes: int = 60, direction: str = "auto", max_width: float = 1040
) -> Layout:
    """Layered layout of the task graph: networkx topological generations on the graph of
    nodes, then two barycentre sweeps to untangle each layer. ``direction`` is ``LR`` (layers
    left to right, as Prefect draws runs), ``TB`` (top to bottom) or ``auto``: LR while it
    fits in ``max_width`` pixels, TB for longer chains (notebooks tend to be long chains, and
    a notebook output scrolls down better than sideways)."""
    import networkx as nx

    assign = group_tasks(run, max_nodes)
    nodes: dict[str, Node] = {}
    for tid, t in run.tasks.items():
        gid = assign[tid]
        node = nodes.get(gid)
        if node is None:
            label = t.label if gid == tid else t.name
            node = nodes[gid] = Node(gid, label, [])
        node.tasks.append(t)
    edge_names: dict[tuple[str, str], list[str]] = {}
    for tid, t in run.tasks.items():
        dst = assign[tid]
        for up in t.upstream:
            src = assign.get(up)
            if src is None or src == dst:
                continue
            names = edge_names.setdefault((src, dst), [])
            for n in t.edge_names.get(up, ()):
                if n not in names:
                    names.append(n)
    for node in nodes.values():
        counts: dict[str, int] = {}
        for t in node.tasks:
            counts[t.state] = counts.get(t.state, 0) + 1
        node.counts = counts
        node.state = group_state(counts) if node.grouped else node.tasks[0].state

    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edge_names)
    if nx.is_directed_acyclic_graph(g):
        for i, gen in enumerate(nx.topological_generations(g)):
            for n in gen:
                nodes[n].layer = i
    else:  # grouping by name can close a loop: lay out the condensation instead
        c = nx.condensation(g)
        for i, gen in enumerate(nx.topological_generations(c)):
            for comp in gen:
                for n in c.nodes[comp]["members"]:
                    nodes[n].layer = i

    layers: dict[int, list[Node]] = {}
    for node in nodes.values():  # creation order is the first guess within a layer
        layers.setdefault(node.layer, []).append(node)
    preds = {n: list(g.predecessors(n)) for n in g}
    succs = {n: list(g.successors(n)) for n in g}

    def sweep(keys: Iterable[int], nbrs: dict[str, list[str]]) -> None:
        for k in keys:
            layer = layers[k]
            for node in layer:
                ps = [nodes[p].order for p in nbrs[node.id]]
                node.order = sum(ps) / len(ps) if ps else node.order
            layer.sort(key=lambda n: n.order)
            for j, node in enumerate(layer):
                node.order = j

    for k in layers:
        for j, node in enumerate(layers[k]):
            node.order = j
    keys = sorted(layers)
    sweep(keys[1:], preds)
    sweep(list(reversed(keys))[1:], succs)

    edges = [Edge(src, dst, names, label_lines(names)) for (src, dst), names in edge_names.items()]
    widest = max((len(line) for e in edges for line in e.lines), default=0)
    deepest = max((len(e.lines) for e in edges), default=0)
    tallest = max((len(v) for v in layers.values()), default=0)
    n_layers = len(layers)
    # a gap between layers wide (LR) or tall (TB) enough for the labels it holds
    lr_gap = max(GAP_X, widest * CHAR_W + 2 * ARROW_ROOM)
    tb_gap = max(TB_GAP_Y, deepest * LINE_H + 2 * ARROW_ROOM)
    lr_width = PAD * 2 + n_layers * NODE_W + max(n_layers - 1, 0) * lr_gap
    if direction == "auto":
        direction = "LR" if lr_width <= max_width or n_layers <= 2 else "TB"
    if direction == "LR":
        gap = lr_gap
        width = lr_width
        height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
        for k, layer in layers.items():
            top = (height - (len(layer) * NODE_H + (len(layer) - 1) * GAP_Y)) / 2
            for j, node in enumerate(layer):
                node.x = PAD + k * (NODE_W + gap)
                node.y = top + j * (NODE_H + GAP_Y)
    else:
        gap = tb_gap
        width = PAD * 2 + tallest * NODE_W + max(tallest - 1, 0) * TB_GAP_X
        height = PAD * 2 + n_layers * NODE_H + max(n_layers - 1, 0) * gap
        for k, layer in layers.items():
            left = (width - (len(layer) * NODE_W + (len(layer) - 1) * TB_GAP_X)) / 2
            for j, node in enumerate(layer):
                node.x = left + j * (NODE_W + TB_GAP_X)
                node.y = PAD + k * (NODE_H + gap)
    right = bottom = 0.0
    for e in edges:
        _route(e, nodes[e.src], nodes[e.dst], direction, gap)
    _declutter(edges, direction)
    for e in edges:
        if e.lines:
            w = max(len(line) for line in e.lines) * CHAR_W
            right = max(right, e.label_x + (w / 2 if direction == "LR" else w))
            bottom = max(bottom, e.label_y + (len(e.lines) - 1) * LINE_H + 4)
    collapsed = any(n.grouped for n in nodes.values())
    return Layout(
        nodes,
        edges,
        max(float(width), right + PAD, 2.0 * PAD),
        max(float(height), bottom + PAD, 2.0 * PAD),
        collapsed,
        direction,
        gap,
    )


def label_box(e: Edge, direction: str) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) an edge's drawn label takes."""
    w = max(len(line) for line in e.lines) * CHAR_W
    left = e.label_x - w / 2 if direction == "LR" else e.label_x
    return (left, e.label_y - 10, left + w, e.label_y + (len(e.lines) - 1) * LINE_H + 3)


def _declutter(edges: list[Edge], direction: str) -> None:
    """Labels that would overlap a label already placed are not drawn (edges converging on
    one node put theirs in the same spot); the edge keeps its names as its tooltip. Edges
    carrying more names are placed first."""
    placed: list[tuple[float, float, float, float]] = []
    for e in sorted((e for e in edges if e.lines), key=lambda e: -len(e.names)):
        box = label_box(e, direction)
        if any(b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3] for b in placed):
            e.lines = []
        else:
            placed.append(box)


def _bezier(p0: float, p1: float, p2: float, p3: float, t: float) -> float:
    u = 1 - t
    return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3


def _route(e: Edge, a: Node, b: Node, direction: str, gap: float) -> None:
    """The edge's curve from ``a`` to ``b``, and its label in the gap just before ``b`` (so
    an edge that spans several layers keeps its label clear of the nodes it passes)."""
    if direction == "LR":
        x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2
        forward = x2 > x1
        if forward:
            c = ((x1 + x2) / 2, y1, (x1 + x2) / 2, y2)
        else:  # same or earlier layer (only after condensing a loop): arc above
            c = (x1 + 40, y1 - 60, x2 - 40, y2 - 60)
        e.path = (
            f"M{x1:.1f},{y1:.1f} C{c[0]:.1f},{c[1]:.1f} {c[2]:.1f},{c[3]:.1f} {x2:.1f},{y2:.1f}"
        )
        lx = x2 - gap / 2 if forward else (x1 + x2) / 2
        t = _solve(lambda t: _bezier(x1, c[0], c[2], x2, t), lx) if forward else 0.5
        y = _bezier(y1, c[1], c[3], y2, t)
        e.label_x = lx
        # the lines sit above the curve where it crosses the label's column
        e.label_y = y - 5 - (len(e.lines) - 1) * LINE_H
    else:
        x1, y1, x2, y2 = a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2, b.y
        forward = y2 > y1
        if forward:
            c = (x1, (y1 + y2) / 2, x2, (y1 + y2) / 2)
        else:  # arc to the left
            c = (x1 - 60, y1 + 40, x2 - 60, y2 - 40)
        e.path = (
            f"M{x1:.1f},{y1:.1f} C{c[0]:.1f},{c[1]:.1f} {c[2]:.1f},{c[3]:.1f} {x2:.1f},{y2:.1f}"
        )
        top = y2 - gap + ARROW_ROOM  # the gap above `b`, less the arrowhead's room
        mid = top + (len(e.lines) * LINE_H) / 2
        t = _solve(lambda t: _bezier(y1, c[1], c[3], y2, t), mid) if forward else 0.5
        e.label_x = _bezier(x1, c[0], c[2], x2, t) + 6
        e.label_y = top + 9  # the first line's baseline


def _solve(f: Any, target: float) -> float:
    """t in [0, 1] where the increasing function ``f`` reaches ``target`` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        m = (lo + hi) / 2
        if f(m) < target:
            lo = m
        else:
            hi = m
    return (lo + hi) / 2


# --------------------------------------------------------------------------- graph SVG


def _node_title(node: Node, now: float | None = None, names: dict[str, str] | None = None) -> str:
    if node.grouped:
        parts = [f"{node.label}: {len(node.tasks)} task runs"]
        parts += [f"{s}: {c}" for s, c in sorted(node.counts.items())]
        errors = [t for t in node.tasks if t.error]
        if errors:
            parts.append(f"first error ({errors[0].label}): {errors[0].error}")
        return "\n".join(parts)
    t = node.tasks[0]
    parts = [t.label, f"state: {t.state}"]
    if t.start is not None:
        parts.append(f"duration: {format_duration(t.elapsed(now))}")
    if t.attempts > 1:
        parts.append(f"attempts: {t.attempts}")
    if t.cached_from:
        parts.append(f"cached from run {(names or {}).get(t.cached_from) or t.cached_from[:8]}")
    if t.error:
        parts.append(f"error: {t.error}")
    return "\n".join(parts)


def _node_subtitle(node: Node, now: float | None = None) -> str:
    if node.grouped:
        c = node.counts
        parts = [
            (c.get(S.COMPLETED, 0) + c.get(S.CACHED, 0), "ok"),
            (sum(n for s, n in c.items() if s in S.FAILED_STATES), "failed"),
            (c.get(S.RUNNING, 0) + c.get(S.RETRYING, 0), "running"),
            (c.get(S.PENDING, 0), "pending"),
            (c.get(S.NOT_RUN, 0), "not run"),
            (c.get(S.CANCELLED, 0), "cancelled"),
        ]
        text = f"\u00d7{len(node.tasks)}"
        for n, what in parts:
            if n and len(text) < 20:
                text += f" \u00b7 {n} {what}"
        return text
    t = node.tasks[0]
    text = t.state
    if t.start is not None and ran(t):  # a running task's time so far
        text += f" \u00b7 {format_duration(t.elapsed(now))}"
    if t.attempts > 1:
        text += f" \u00b7 try {t.attempts}"
    return text


def graph_svg(
    run: RunView,
    max_nodes: int = 60,
    edge_labels: int = 80,
    subtitles: dict[str, str] | None = None,
    direction: str = "auto",
    now: float | None = None,
    names: dict[str, str] | None = None,
) -> str:
    """The task graph as one ``<svg>``: nodes coloured by state (``data-state``), labelled with
    name and duration (or ``subtitles[node id]``: the flow plan shows cells); edges carry the
    variable names (visible label while there are at most ``edge_labels`` edges, always as a
    ``<title>`` tooltip). ``names``: run names of the runs cached values came from."""
    lay = layout(run, max_nodes, direction)
    if not lay.nodes:
        return '<div class="nb2f-empty">No task runs yet.</div>'
    mid = f"nb2f-arrow-{abs(hash(run.id)) % 10**8}"
    out = [
        f'<svg class="nb2f-graph" xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" '
        f'height="{lay.height:.0f}" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
        f'font-family="system-ui, sans-serif" data-nodes="{len(lay.nodes)}" '
        f'data-edges="{len(lay.edges)}" data-collapsed="{str(lay.collapsed).lower()}" '
        f'data-direction="{lay.direction}">',
        f'<defs><marker id="{mid}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker>'
        "</defs>",
    ]
    show_labels = len(lay.edges) <= edge_labels
    sub = subtitles or {}
    anchor = "middle" if lay.direction == "LR" else "start"
    for e in lay.edges:
        a, b = lay.nodes[e.src], lay.nodes[e.dst]
        listed = ", ".join(e.names)
        title = f"{a.label} \u2192 {b.label}" + (f": {listed}" if listed else "")
        out.append(
            f'<g class="nb2f-edge" data-src="{esc(e.src)}" data-dst="{esc(e.dst)}" '
            f'data-names="{esc(listed)}"><title>{esc(title)}</title>'
            f'<path d="{e.path}" fill="none" stroke="#6b7280" stroke-width="1.4" '
            f'marker-end="url(#{mid})"/>'
        )
        if e.lines and show_labels:
            spans = "".join(
                f'<tspan x="{e.label_x:.1f}" dy="{0 if i == 0 else LINE_H}">{esc(line)}</tspan>'
                for i, line in enumerate(e.lines)
            )
            out.append(
                f'<text class="nb2f-edge-label" x="{e.label_x:.1f}" y="{e.label_y:.1f}" '
                f'font-size="10" text-anchor="{anchor}" fill="#374151" stroke="#ffffff" '
                f'stroke-width="3" paint-order="stroke">{spans}</text>'
            )
        out.append("</g>")
    for node in lay.nodes.values():
        fill, stroke, color, _ = S.colour(node.state)
        dash = ' stroke-dasharray="5 3"' if node.state == S.NOT_RUN else ""
        italic = ' font-style="italic"' if node.state == S.NOT_RUN else ""
        width = 3 if node.state in S.FAILED_STATES else 1.5
        out.append(
            f'<g class="nb2f-node" data-id="{esc(node.id)}" data-task="{esc(node.label)}" '
            f'data-state="{esc(node.state)}" data-count="{len(node.tasks)}">'
            f"<title>{esc(_node_title(node, now, names))}</title>"
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{NODE_W}" height="{NODE_H}" '
            f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>'
            f'<text x="{node.x + 10:.1f}" y="{node.y + 19:.1f}" font-size="13" '
            f'font-weight="600" fill="{color}"{italic}>{esc(_short(node.label, 21))}</text>'
            f'<text x="{node.x + 10:.1f}" y="{node.y + 36:.1f}" font-size="11" '
            f'fill="{color}"{italic}>{esc(sub.get(node.id) or _node_subtitle(node, now))}</text>'
        )
        if node.grouped:  # a bar of the group's states along the bottom edge
            x, total = node.x + 6, len(node.tasks)
            for s in S.COLOURS:
                c = node.counts.get(s, 0)
                if c:
                    w = (NODE_W - 12) * c / total
                    out.append(
                        f'<rect x="{x:.1f}" y="{node.y + NODE_H - 6:.1f}" width="{w:.1f}" '
                        f'height="3" fill="{S.COLOURS[s].stroke}"/>'
                    )
                    x += w
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- timeline SVG


def _nice_step(span: float, ticks: int = 8) -> float:
    raw = max(span, 1e-3) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt_tick(value: float, step: float) -> str:
    """An axis label with as many decimals as the tick step needs."""
    if value == 0:
        return "0"
    if step < 1:
        ms, digits = value * 1000, max(0, -math.floor(math.log10(step * 1000) + 1e-9))
        return f"{ms:.{digits}f}ms"
    if step < 60:
        return f"{value:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}s"
    return format_duration(value)


def attempt_segments(t: TaskRunView, now: float) -> list[tuple[float, float, str, int]]:
    """(start, end, outcome, attempt) for every Running stretch of a task run: a retried task
    has one segment per attempt, each coloured by how that attempt ended."""
    segs: list[tuple[float, float, str, int]] = []
    hist = t.history
    for i, (state, ts, attempt) in enumerate(hist):
        if state != S.RUNNING:
            continue
        if i + 1 < len(hist):
            nxt_state, nxt_ts, _ = hist[i + 1]
        else:
            nxt_state, nxt_ts = S.RUNNING, now
        segs.append((ts, max(nxt_ts, ts), nxt_state, attempt))
    return segs


def timeline_svg(
    run: RunView, max_rows: int = 60, width: int = 960, now: float | None = None
) -> str:
    """One bar per task run from start to end, coloured by state; each retry attempt is its
    own bar (the failed attempt orange, the wait before the next one dashed). Runs with more
    than ``max_rows`` task runs get one row per graph node (map calls or task names)."""
    tasks = list(run.tasks.values())
    if not tasks:
        return '<div class="nb2f-empty">No task runs yet.</div>'
    now = time.time() if now is None else now
    t0 = run.start or run.created or min((t.created or now) for t in tasks)
    if run.end is not None:
        t1 = run.end
    else:
        ends = [t.end for t in tasks if t.end is not None] + [now if not run.final else t0]
        t1 = max(ends)
    span = max(t1 - t0, 1e-3)
    if len(tasks) > max_rows:
        assign = group_tasks(run, max_rows)
        rows: dict[str, list[TaskRunView]] = {}
        for t in tasks:
            rows.setdefault(assign[t.id], []).append(t)
        row_list = [(grp[0].name + f" \u00d7{len(grp)}", grp) for grp in rows.values()]
    else:
        row_list = [(t.label, [t]) for t in tasks]
    label_w, row_h, top = 190, 20, 26
    plot_w = width - label_w - PAD
    height = top + len(row_list) * row_h + PAD

    def X(ts: float) -> float:
        return label_w + (ts - t0) / span * plot_w

    out = [
        f'<svg class="nb2f-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" '
        f'data-rows="{len(row_list)}">'
    ]
    step = _nice_step(span)
    k = 0
    while k * step <= span + 1e-9:
        x = X(t0 + k * step)
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - PAD}" '
            f'stroke="#e5e7eb"/><text x="{x:.1f}" y="{top - 10}" font-size="10" '
            f'text-anchor="middle" fill="#6b7280">{esc(_fmt_tick(k * step, step))}</text>'
        )
        k += 1
    for r, (label, group) in enumerate(row_list):
        y = top + r * row_h
        grp_state = group_state(_counts(group)) if len(group) > 1 else group[0].state
        stroke = S.colour(grp_state).stroke
        italic = ' font-style="italic"' if grp_state == S.NOT_RUN else ""
        out.append(
            f'<g class="nb2f-row" data-task="{esc(label)}" data-state="{esc(grp_state)}">'
            f'<text x="{label_w - 8}" y="{y + 14}" font-size="11" text-anchor="end" '
            f'fill="{"#6b7280" if grp_state == S.NOT_RUN else "#111827"}"{italic}>'
            f"{esc(_short(label, 28))}</text>"
        )
        for t in group:
            segs = attempt_segments(t, now)
            if not segs:  # never ran: Cached / NotRun / Cancelled get a marker at their time
                if t.end is not None:
                    fill, stroke, _, _ = S.colour(t.state)
                    dash = ' stroke-dasharray="2 2"' if t.state == S.NOT_RUN else ""
                    out.append(
                        f'<rect class="nb2f-bar" data-state="{esc(t.state)}" x="{X(t.end):.1f}" '
                        f'y="{y + 4}" width="6" height="{row_h - 8}" fill="{fill}" '
                        f'stroke="{stroke}"{dash}><title>{esc(t.label)}: {esc(t.state)}'
                        f"</title></rect>"
                    )
                continue
            for i, (a, b, outcome, attempt) in enumerate(segs):
                state = outcome if outcome in S.COLOURS else S.RUNNING
                fill, stroke, _, _ = S.colour(state)
                w = max(X(b) - X(a), 2.0)
                tip = f"{t.label} attempt {attempt}: {state}, {format_duration(b - a)}"
                if state in S.FAILED_STATES | {S.RETRYING} and t.error:
                    tip += f"\n{t.error}"
                out.append(
                    f'<rect class="nb2f-bar" data-state="{esc(state)}" data-attempt="{attempt}" '
                    f'data-seconds="{b - a:.3f}" '
                    f'x="{X(a):.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="2" '
                    f'fill="{fill}" stroke="{stroke}"><title>{esc(tip)}</title></rect>'
                )
                if i + 1 < len(segs):  # the wait before the retry
                    nxt = segs[i + 1][0]
                    out.append(
                        f'<line class="nb2f-wait" x1="{X(b):.1f}" y1="{y + row_h / 2}" '
                        f'x2="{X(nxt):.1f}" y2="{y + row_h / 2}" stroke="#c2410c" '
                        f'stroke-dasharray="3 2"/>'
                    )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _counts(tasks: Iterable[TaskRunView]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tasks:
        out[t.state] = out.get(t.state, 0) + 1
    return out


# --------------------------------------------------------------------------- HTML parts


def badge(state: str) -> str:
    fill, stroke, color, _ = S.colour(state)
    return (
        f'<span class="nb2f-badge" data-state="{esc(state)}" style="background:{fill};'
        f'border-color:{stroke};color:{color}">{esc(state)}</span>'
    )


def fmt_when(ts: float | None, since: float | None = None) -> str:
    """A date and time (``2026-12-01 10:48:04``); only the time when ``since`` was earlier
    the same day."""
    if ts is None:
        return ""
    if since is not None and time.localtime(ts)[:3] == time.localtime(since)[:3]:
        return time.strftime("%H:%M:%S", time.localtime(ts))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def identity_html(run: RunView) -> str:
    """When and where the run ran: start and end (with the date), run id, task runner,
    script and working directory, tags."""
    start = run.start if run.start is not None else run.created
    parts = []
    if start is not None:
        parts.append(f'<span class="nb2f-start">started {esc(fmt_when(start))}</span>')
    if run.end is not None:
        parts.append(f'<span class="nb2f-end">ended {esc(fmt_when(run.end, start))}</span>')
    parts.append(f'<span class="nb2f-id" title="{esc(run.id)}">run {esc(run.id[:8])}</span>')
    if run.task_runner:
        parts.append(f'<span class="nb2f-runner">{esc(run.task_runner)}</span>')
    if run.script:
        parts.append(
            f'<span class="nb2f-script" title="{esc(run.script)}">{esc(run.script)}</span>'
        )
    if run.cwd:
        parts.append(f'<span class="nb2f-cwd" title="working directory">in {esc(run.cwd)}</span>')
    tags = "".join(f'<span class="nb2f-tag">{esc(t)}</span>' for t in run.tags)
    return (
        '<div class="nb2f-ident">'
        + ' <span class="nb2f-sep">\u00b7</span> '.join(parts)
        + (f" {tags}" if tags else "")
        + "</div>"
    )


def header_html(run: RunView, now: float | None = None) -> str:
    """Flow name, run name, state badge, elapsed time; when and where it ran; parameters,
    counts per state and, for a failed run, which tasks failed and why."""
    title = esc(run.flow_name or "flow")
    name = f' <span class="nb2f-run">{esc(run.run_name)}</span>' if run.run_name else ""
    took = format_duration(run.elapsed(now))
    parts = [
        f'<div class="nb2f-head"><span class="nb2f-flow">{title}</span>{name} {badge(run.state)}'
        f' <span class="nb2f-elapsed">{esc(took)}</span></div>',
        identity_html(run),
    ]
    if run.parameters:
        params = " ".join(
            f'<code title="{esc(v)}">{esc(k)}={esc(_short(str(v), 40))}</code>'
            for k, v in run.parameters.items()
        )
        parts.append(f'<div class="nb2f-params">{params}</div>')
    counts = run.counts()
    if counts:
        parts.append(
            '<div class="nb2f-counts">'
            + " ".join(
                f'<span class="nb2f-count">{badge(s)}&nbsp;{c}</span>'
                for s, c in sorted(counts.items(), key=lambda sc: S.ALL_STATES.index(sc[0]))
                if s in S.ALL_STATES
            )
            + "</div>"
        )
    failed = [t for t in run.tasks.values() if t.state in S.FAILED_STATES]
    if failed or run.error:
        lines = [
            f"<div><b>{esc(t.label)}</b> {esc(t.state)}: {esc(t.error or '')}</div>"
            for t in failed[:3]
        ]
        if len(failed) > 3:
            lines.append(f"<div>\u2026 and {len(failed) - 3} more failed task runs</div>")
        if run.error and not failed:
            lines.append(f"<div>{esc(run.error)}</div>")
        parts.append(f'<div class="nb2f-error">{"".join(lines)}</div>')
    return "".join(parts)


def progress_html(run: RunView) -> str:
    """The progress bar as plain HTML (the static panel and the report): finished of known
    task runs, red once one failed."""
    done, known = progress(run)
    failed = any(t.state in S.FAILED_STATES for t in run.tasks.values())
    pct = 100.0 * done / known if known else 0.0
    colour = S.colour(S.FAILED).fill if failed else S.colour(S.COMPLETED).stroke
    return (
        f'<div class="nb2f-progress" data-done="{done}" data-known="{known}">'
        f'<div class="nb2f-bar-track"><div class="nb2f-bar-fill" style="width:{pct:.1f}%;'
        f'background:{colour}"></div></div> <span>{esc(progress_text(run))}</span></div>'
    )


def tasks_table_html(
    run: RunView,
    limit: int | None = None,
    now: float | None = None,
    names: dict[str, str] | None = None,
) -> str:
    """One row per task run: state, start (clock time and offset), duration (so far, for a
    running one), attempts, error. With ``limit``, failed and unfinished rows are kept first
    and the rest is counted. ``names``: run names of the runs cached values came from."""
    tasks = list(run.tasks.values())
    if not tasks:
        return '<div class="nb2f-empty">No task runs yet.</div>'
    hidden = 0
    if limit is not None and len(tasks) > limit:
        urgent = [t for t in tasks if t.state in S.FAILED_STATES or not t.final]
        rest = [t for t in tasks if not (t.state in S.FAILED_STATES or not t.final)]
        keep = {id(t) for t in (urgent + rest)[:limit]}
        hidden = len(tasks) - len(keep)
        tasks = [t for t in tasks if id(t) in keep]
    t0 = run.start or run.created
    rows = []
    for t in tasks:
        start = duration = attempts = ""
        if ran(t) and t.start is not None:
            offset = f" (+{format_duration(t.start - t0)})" if t0 is not None else ""
            start = f"{fmt_clock(t.start)}{offset}"
            duration, attempts = format_duration(t.elapsed(now)), str(t.attempts or "")
        extra = ""
        if t.cached_from:
            source = (names or {}).get(t.cached_from) or t.cached_from[:8]
            extra = f' <span title="run {esc(t.cached_from)}">from run {esc(source)}</span>'
        error = esc(t.error or "")
        if t.error and t.state not in S.FAILED_STATES:  # an earlier attempt's error, retried
            error = f'<span class="nb2f-retried">retried after: {error}</span>'
        rows.append(
            f'<tr class="nb2f-tr" data-task="{esc(t.label)}" data-state="{esc(t.state)}">'
            f"<td>{esc(t.label)}</td><td>{badge(t.state)}{extra}</td>"
            f"<td>{esc(start)}</td><td>{esc(duration)}</td><td>{attempts}</td>"
            f'<td class="nb2f-err">{error}</td></tr>'
        )
    more = (
        f'<div class="nb2f-more">{hidden} more task runs not shown (all finished)</div>'
        if hidden
        else ""
    )
    return (
        '<table class="nb2f-table"><thead><tr><th>task</th><th>state</th><th>start</th>'
        "<th>duration</th><th>attempts</th><th>error</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + more
    )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def log_entries(run: RunView) -> list[LogView]:
    """The run's log records, newest last, with tracebacks added where no record holds them:
    each failed task run's (ERROR, at its end), a retried task's earlier failure (WARNING, when
    it was retried) and the flow's own when no failed task explains it."""
    logs = list(run.logs)
    extra: list[LogView] = []

    def logged(tid: str | None, tb: str) -> bool:
        tb = tb.strip()
        return any(lg.task_run_id == tid and tb in lg.message for lg in logs)

    failed_lines = set()
    for t in run.tasks.values():
        if not t.traceback or logged(t.id, t.traceback):
            continue
        if t.state in S.FAILED_STATES:
            failed_lines.add(_last_line(t.traceback))
            extra.append(
                LogView(t.end or t.start or 0.0, t.id, 40, "ERROR", t.traceback.rstrip(), "")
            )
        else:
            retries = [(ts, a) for state, ts, a in t.history if state == S.RETRYING]
            if retries:
                ts, attempt = retries[-1]
                text = f"attempt {attempt} failed, retried:\n{t.traceback.rstrip()}"
                extra.append(LogView(ts, t.id, 30, "WARNING", text, ""))
    if (
        run.traceback
        and _last_line(run.traceback) not in failed_lines
        and not logged(None, run.traceback)
    ):
        extra.append(LogView(run.end or 0.0, None, 40, "ERROR", run.traceback.rstrip(), ""))
    if extra:
        logs = sorted(logs + extra, key=lambda lg: lg.ts)
    return logs


def log_sources(run: RunView) -> list[str]:
    """The names the log filter offers, in order: ``flow`` (the flow body), then each task
    name with records (a ``.map``'s runs share theirs)."""
    names: dict[str, None] = {}
    for lg in log_entries(run):
        t = run.tasks.get(lg.task_run_id or "")
        names[t.name if t is not None else ""] = None
    return sorted(names, key=lambda n: (n != "", list(names).index(n)))


def logs_html(
    run: RunView,
    task_run_id: str | None = None,
    min_level: int = 0,
    limit: int | None = None,
    sources: list[str] | None = None,
) -> str:
    """Log lines (time, level, task, message), newest last; ``task_run_id`` keeps one task's,
    ``min_level`` drops quieter records, ``limit`` keeps the newest lines. Each line carries
    its level (``data-lv``, 10/20/30/40) and source (``data-k``: its index in ``sources``,
    see :func:`log_sources`) for the log filter (:func:`log_filter_html`)."""
    logs = [
        lg
        for lg in log_entries(run)
        if (task_run_id is None or lg.task_run_id == task_run_id) and lg.level >= min_level
    ]
    if not logs:
        return '<div class="nb2f-empty">No log records.</div>'
    index = {name: i for i, name in enumerate(sources if sources is not None else log_sources(run))}
    skipped = 0
    if limit is not None and len(logs) > limit:
        skipped = len(logs) - limit
        logs = logs[-limit:]
    lines = []
    if skipped:
        lines.append(f'<div class="nb2f-more">{skipped} older records not shown</div>')
    for lg in logs:
        t = run.tasks.get(lg.task_run_id or "")
        who = esc(t.label) if t is not None else esc(run.flow_name or "flow")
        level = lg.levelname or str(lg.level)
        k = index.get(t.name if t is not None else "", -1)
        lines.append(
            f'<div class="nb2f-log nb2f-lvl-{_level_class(lg.level)}" data-level="{esc(level)}" '
            f'data-lv="{_level_bucket(lg.level)}" data-k="{k}" '
            f'data-task="{esc(lg.task_run_id or "")}"><span class="nb2f-ts">{fmt_clock(lg.ts)}'
            f'</span> <span class="nb2f-lvl">{esc(level)}</span> <span class="nb2f-who">{who}'
            f'</span> <span class="nb2f-msg">{esc(lg.message)}</span></div>'
        )
    return '<div class="nb2f-logs">' + "".join(lines) + "</div>"


def _level_bucket(level: int) -> int:
    return 40 if level >= 40 else 30 if level >= 30 else 20 if level >= 20 else 10


def log_filter_html(run: RunView, scope: str, ids: str, sources: list[str] | None = None) -> str:
    """The log filter: a level and a task ``<select>`` that hide log lines by CSS alone (no
    script, no kernel: it works while the kernel runs the flow, in a saved notebook and in the
    report). ``scope`` is a class of an element holding both the filter and the lines, ``ids``
    prefixes the selects' ids (``{ids}log-level``, ``{ids}log-task``)."""
    sources = sources if sources is not None else log_sources(run)
    level, task = f"{ids}log-level", f"{ids}log-task"
    rules = []
    for minimum in (20, 30, 40):
        hidden = ",".join(f'[data-lv="{b}"]' for b in (10, 20, 30) if b < minimum)
        rules.append(
            f'.{scope}:has(#{level} option[value="{minimum}"]:checked) .nb2f-log:is({hidden})'
            "{display:none}"
        )
    options = []
    for k, name in enumerate(sources):
        rules.append(
            f'.{scope}:has(#{task} option[value="{k}"]:checked) .nb2f-log:not([data-k="{k}"])'
            "{display:none}"
        )
        options.append(f'<option value="{k}">{esc(name or "flow")}</option>')
    return (
        f"<style>{''.join(rules)}</style>"
        '<div class="nb2f-filter">'
        f'<label>task <select id="{task}"><option value="" selected>all tasks</option>'
        f"{''.join(options)}</select></label> "
        f'<label>level <select id="{level}"><option value="0" selected>all levels</option>'
        '<option value="20">INFO+</option><option value="30">WARNING+</option>'
        '<option value="40">ERROR+</option></select></label></div>'
    )


# --------------------------------------------------------------------------- outputs


def _markdown(text: str) -> str:
    """Markdown as HTML, raw HTML in it escaped (markdown-it, which rich brings)."""
    from markdown_it import MarkdownIt

    return str(MarkdownIt("commonmark", {"html": False}).render(text))


def artifact_html(art: Any) -> str:
    """One artifact's content: its image, HTML, markdown or text."""
    import base64

    png = art.get("image/png")
    if isinstance(png, (bytes, bytearray)):
        data = base64.b64encode(png).decode("ascii")
        return (
            f'<img class="nb2f-img" alt="{esc(art.name or art.kind)}" '
            f'src="data:image/png;base64,{data}">'
        )
    rich = art.get("text/html")
    if isinstance(rich, str):
        return f'<div class="nb2f-art-html">{rich}</div>'
    md = art.get("text/markdown")
    if isinstance(md, str):
        return f'<div class="nb2f-art-md">{_markdown(md)}</div>'
    return f'<pre class="nb2f-art-text">{esc(art.text)}</pre>'


def _result_cell(summary: dict[str, Any], width: int = 120) -> str:
    """A result summary: one line, or one line per item of a returned dict / ``nout`` tuple
    (each cut to ``width``; the whole text is the tooltip)."""
    items = summary.get("items")
    if isinstance(items, dict | list):
        pairs = items.items() if isinstance(items, dict) else enumerate(items)
        lines = "".join(
            f'<div><span class="nb2f-key">{esc(k)}</span> '
            f'<code title="{esc(describe_result(v))}">{esc(_short(describe_result(v), width))}'
            "</code></div>"
            for k, v in pairs
        )
        return f'<div class="nb2f-items">{lines}</div>'
    text = describe_result(summary)
    return f'<code title="{esc(text)}">{esc(_short(text, width))}</code>'


def outputs_html(run: RunView) -> str:
    """What the run returned and showed: each task's result and the flow's return (type,
    shape, value head), then every artifact (figures, tables, displayed values, markdown)
    under the task that made it."""
    parts = []
    results = [(t.label, t.result) for t in run.tasks.values() if t.result is not None]
    if run.result is not None:
        results.append((f"{run.flow_name or 'flow'} returned", run.result))
    if results:
        rows = "".join(
            f'<tr data-task="{esc(label)}"><td>{esc(label)}</td><td>{_result_cell(result)}</td></tr>'
            for label, result in results
        )
        parts.append(
            '<table class="nb2f-table nb2f-results"><thead><tr><th>task</th><th>returned</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    order = {tid: i for i, tid in enumerate(run.tasks)}
    shown = sorted(run.artifacts, key=lambda a: order.get(a.task_run_id or "", -1))
    for art in shown:
        t = run.tasks.get(art.task_run_id or "")
        who = t.label if t is not None else (run.flow_name or "flow")
        note = ' <span class="nb2f-more">(cut to fit)</span>' if art.truncated else ""
        parts.append(
            f'<div class="nb2f-art" data-kind="{esc(art.kind)}" data-task="{esc(who)}">'
            f'<div class="nb2f-art-head"><b>{esc(who)}</b> {esc(art.kind)}'
            f"{' &middot; ' + esc(art.name) if art.name else ''}{note}</div>"
            f"{artifact_html(art)}</div>"
        )
    if not parts:
        return '<div class="nb2f-empty">Nothing returned or shown yet.</div>'
    return '<div class="nb2f-outputs">' + "".join(parts) + "</div>"


def _level_class(level: int) -> str:
    if level >= 40:
        return "error"
    if level >= 30:
        return "warning"
    if level >= 20:
        return "info"
    return "debug"


# `.nb2f table.nb2f-table` outranks JupyterLab's `:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon
# td {text-align:right}`, which the cells of a saved panel (an HTML output) get
CSS = """
.nb2f{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:13px;color:#111827;
 background:#ffffff;}
.nb2f .widget-html-content{line-height:1.45}
.nb2f .widget-html-content,.nb2f .widget-label,.nb2f .widget-label-basic{color:#111827}
.nb2f .widget-tab > .widget-tab-contents{background:#ffffff !important}
.nb2f-head{font-size:15px;margin:2px 0 4px 0}
.nb2f-flow{font-weight:700}
.nb2f-run{color:#4b5563;margin-left:4px}
.nb2f-elapsed{color:#4b5563;margin-left:6px;font-variant-numeric:tabular-nums}
.nb2f-badge{display:inline-block;border:1px solid;border-radius:9px;padding:0 7px;
 font-size:11px;line-height:17px;font-weight:600}
.nb2f-params code{background:#f3f4f6;border-radius:3px;padding:0 4px;margin-right:4px;
 font-size:11px;color:#111827}
.nb2f-params,.nb2f-counts{margin:3px 0}
.nb2f-error{margin:4px 0;padding:4px 8px;border-left:4px solid #dc2626;background:#fef2f2;
 color:#7f1d1d;white-space:pre-wrap}
.nb2f-scroll{overflow:auto;max-height:640px;background:#ffffff;max-width:100%}
.nb2f .nb2f-scroll > svg{max-width:none !important;height:auto}
.nb2f-table{border-collapse:collapse;font-size:12px;width:100%;color:#111827}
.nb2f-table th{border-bottom:2px solid #d1d5db;padding:3px 8px;
 background:#f9fafb;position:sticky;top:0}
.nb2f-table td{border-bottom:1px solid #e5e7eb;padding:3px 8px;vertical-align:top}
.nb2f table.nb2f-table th,.nb2f table.nb2f-table td{text-align:left}
.nb2f-tr[data-state="Failed"],.nb2f-tr[data-state="TimedOut"],.nb2f-tr[data-state="Crashed"]
 {background:#fef2f2}
.nb2f-tr[data-state="NotRun"]{color:#6b7280;font-style:italic}
.nb2f-err{color:#b91c1c;white-space:pre-wrap;max-width:420px}
.nb2f-retried{color:#9a3412}
.nb2f-logs{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;
 color:#111827}
.nb2f-log{white-space:pre-wrap;padding:1px 4px;border-left:3px solid transparent}
.nb2f-ts{color:#6b7280}
.nb2f-lvl{display:inline-block;min-width:58px;font-weight:600}
.nb2f-who{color:#1d4ed8}
.nb2f-lvl-debug{color:#6b7280}
.nb2f-lvl-warning{background:#fffbeb;border-left-color:#d97706}
.nb2f-lvl-warning .nb2f-lvl{color:#b45309}
.nb2f-lvl-error{background:#fef2f2;border-left-color:#dc2626}
.nb2f-lvl-error .nb2f-lvl{color:#b91c1c}
.nb2f-empty,.nb2f-more{color:#6b7280;font-style:italic;padding:4px}
.nb2f-ident{color:#4b5563;font-size:12px;margin:1px 0 3px 0}
.nb2f-ident .nb2f-sep{color:#9ca3af}
.nb2f-script,.nb2f-cwd{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:11px}
.nb2f-tag{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:3px;
 padding:0 5px;margin-left:3px;font-size:11px}
.nb2f-count{margin-right:6px;white-space:nowrap}
.nb2f-filter{margin:2px 0 6px 0}.nb2f-filter select{margin-right:10px}
.nb2f-outputs{max-width:100%}
.nb2f-results code{white-space:pre-wrap;font-size:11px}
.nb2f-results td:first-child{width:1%;white-space:nowrap;padding-right:24px}
.nb2f-key{display:inline-block;min-width:90px;color:#4b5563;font-size:11px}
.nb2f-art{margin:10px 0;border-top:1px solid #e5e7eb;padding-top:6px}
.nb2f-art-head{font-size:12px;color:#374151;margin-bottom:4px}
.nb2f-img{max-width:100%;height:auto;border:1px solid #e5e7eb}
.nb2f-art-html{overflow:auto;max-height:480px;max-width:100%}
.nb2f-art-html table{border-collapse:collapse;font-size:12px}
.nb2f-art-html th,.nb2f-art-html td{border:1px solid #e5e7eb;padding:2px 6px;text-align:right}
.nb2f-art-text{white-space:pre-wrap;font-size:12px;margin:0;max-height:480px;overflow:auto}
.nb2f-progress{display:flex;align-items:center;gap:8px;margin:4px 0;font-size:12px}
.nb2f-bar-track{flex:0 0 70%;height:10px;background:#e5e7eb;border-radius:5px;overflow:hidden}
.nb2f-bar-fill{height:100%}
.nb2f .widget-html,.nb2f .widget-html-content{max-width:100%;min-width:0}
.nb2f-tabs{display:flex;gap:2px;border-bottom:1px solid #d1d5db;margin-top:6px}
.nb2f-tabs input{position:absolute;opacity:0;pointer-events:none}
.nb2f-tab{padding:4px 12px;border:1px solid #d1d5db;border-bottom:none;background:#f3f4f6;
 cursor:pointer;border-radius:4px 4px 0 0;color:#111827}
.nb2f-pane{display:none;padding:6px 2px}
"""


TABS = ("Graph", "Timeline", "Tasks", "Logs", "Outputs")


def pane_html(run: RunView, tab: str, now: float | None = None, **kw: Any) -> str:
    """The content of one tab of the panel (scrollable where it may be wide or long)."""
    if tab == "Graph":
        graph = graph_svg(run, now=now, names=kw.get("names"))
        return f'<div class="nb2f-scroll">{graph}</div>' + legend_html()
    if tab == "Timeline":
        return f'<div class="nb2f-scroll">{timeline_svg(run, now=now)}</div>'
    if tab == "Tasks":
        table = tasks_table_html(run, kw.get("limit"), now=now, names=kw.get("names"))
        return f'<div class="nb2f-scroll">{table}</div>'
    if tab == "Logs":
        logs = logs_html(run, limit=kw.get("log_limit"), sources=kw.get("sources"))
        return f'<div class="nb2f-scroll">{logs}</div>'
    return f'<div class="nb2f-scroll">{outputs_html(run)}</div>'


def legend_html() -> str:
    return (
        '<div class="nb2f-legend" style="margin-top:4px">'
        + " ".join(badge(s) for s in S.COLOURS)
        + "</div>"
    )


def static_panel_html(
    run: RunView,
    names: dict[str, str] | None = None,
    limit: int | None = None,
    log_limit: int | None = None,
) -> str:
    """The panel as one HTML fragment that needs no kernel, no widget and no script: the
    header, the progress bar, and the tabs (radio buttons and CSS ``:has()``), the log filter
    included. A live panel leaves this in the notebook when its run ends, so a saved
    notebook shows the final panel without a kernel."""
    import secrets

    scope = f"nb2f-s{run.id[:8]}{secrets.token_hex(3)}"  # unique even if shown twice
    sources = log_sources(run)
    rules = [f".{scope} .nb2f-pane{{display:none}}"]
    radios, panes = [], []
    for i, tab in enumerate(TABS):
        rid = f"{scope}-tab{i}"
        rules.append(f".{scope}:has(#{rid}:checked) .nb2f-pane{i}{{display:block}}")
        rules.append(
            f".{scope}:has(#{rid}:checked) label[for={rid}]"
            "{background:#ffffff;font-weight:600;margin-bottom:-1px;padding-bottom:5px}"
        )
        checked = " checked" if i == 0 else ""
        radios.append(
            f'<input type="radio" name="{scope}-tab" id="{rid}"{checked}>'
            f'<label class="nb2f-tab" for="{rid}">{tab}</label>'
        )
        body = pane_html(run, tab, names=names, sources=sources, limit=limit, log_limit=log_limit)
        if tab == "Logs":
            body = log_filter_html(run, scope, f"{scope}-", sources) + body
        panes.append(f'<div class="nb2f-pane nb2f-pane{i}" data-tab="{tab}">{body}</div>')
    return (
        f'<div class="nb2f nb2f-panel nb2f-static {scope}" data-run="{esc(run.id)}" '
        'style="border:1px solid #d1d5db;padding:6px 10px">'
        f"<style>{CSS}{''.join(rules)}</style>"
        f"{header_html(run)}{progress_html(run)}"
        f'<div class="nb2f-tabs">{"".join(radios)}</div>{"".join(panes)}</div>'
    )


def report_html(
    run: RunView, generated: float | None = None, names: dict[str, str] | None = None
) -> str:
    """The whole run as one self-contained HTML page: inline CSS, SVG and images, no script
    at all (the log filter is CSS; the page's policy forbids scripts, so nothing an output
    holds can run), nothing fetched from anywhere."""
    title = f"{run.flow_name or 'flow'} {run.run_name}".strip()
    when = fmt_when(time.time() if generated is None else generated)
    sources = log_sources(run)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>{esc(title)} \u00b7 nb2flow run report</title>
<style>{CSS}
body{{margin:16px 24px;background:#ffffff}} h2{{font-size:15px;margin:18px 0 6px 0;
border-bottom:1px solid #e5e7eb;padding-bottom:3px}} .nb2f-foot{{color:#6b7280;font-size:11px;
margin-top:18px}} select{{margin:0 0 6px 0}}
</style></head>
<body class="nb2f nb2f-report" data-run="{esc(run.id)}">
<section id="header">{header_html(run)}{progress_html(run)}</section>
<h2>Graph</h2><div class="nb2f-scroll" id="graph">{graph_svg(run, names=names)}</div>
<h2>Timeline</h2><div class="nb2f-scroll" id="timeline">{timeline_svg(run)}</div>
<h2>Tasks</h2><div id="tasks">{tasks_table_html(run, names=names)}</div>
<h2>Outputs</h2><div id="outputs">{outputs_html(run)}</div>
<h2>Logs</h2>
{log_filter_html(run, "nb2f-report", "", sources)}
<div id="logs">{logs_html(run, sources=sources)}</div>
<div class="nb2f-foot">flow run {esc(run.id)} \u00b7 report generated by nb2flow on {esc(when)}</div>
</body></html>
"""
