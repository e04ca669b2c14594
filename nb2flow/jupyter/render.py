"""Pure rendering of a :class:`~nb2flow.runtime.core.model.RunView`: graph and timeline as inline
SVG, tasks table and logs as HTML, and the whole self-contained report page.

Every function here takes a run view and returns text; nothing touches widgets, files or
the network, so the live panel, ``show()`` and ``nb2flow report`` share one renderer and the
tests can check the output directly. Every name that comes from a run (flow, task, parameter,
variable, log text) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import itertools
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
    #: a waypoint of an edge that spans several layers (it takes a narrow slot in each layer
    #: it crosses, so the edge passes between the nodes), never drawn
    virtual: bool = False

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
    #: where the label goes: beside the edge as it leaves its source (True), or as it
    #: enters its destination (the end with fewer edges: fan-in labels by their sources)
    near_source: bool = True
    #: the label's anchor: the start of its first line's baseline
    label_x: float = 0.0
    label_y: float = 0.0
    #: the curve, as SVG path data (M, L and C only)
    path: str = ""
    #: the curve as a polyline (for keeping labels clear of it)
    points: list[tuple[float, float]] = field(default_factory=list)
    #: the waypoints the edge passes between its two nodes (virtual nodes), in order
    via: list[str] = field(default_factory=list)


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float
    collapsed: bool
    direction: str = "LR"
    #: the gap after each layer but the last (wider where edge labels need room)
    gaps: list[float] = field(default_factory=list)


#: edge labels: characters per line, lines at most, and the size a character and a line
#: take at font-size 10 (generous, so a label never reaches a node or an arrowhead)
LABEL_CHARS, LABEL_LINES, CHAR_W, LINE_H = 22, 3, 6.4, 12
#: room kept clear before the node an edge enters (its arrowhead), between a label and any
#: node, between a label and the edge it names; the depth of the stretch of a gap where
#: edges bend (no label there)
ARROW_ROOM, NODE_ROOM, LABEL_PAD, BEND = 14, 8, 4, 36
#: how wide (across the layer) a waypoint's slot is
VIA_W = 14


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
    run: RunView,
    max_nodes: int = 60,
    direction: str = "auto",
    max_width: float = 1040,
    edge_labels: int | None = None,
) -> Layout:
    """Layered layout of the task graph: networkx topological generations on the graph of
    nodes, an edge spanning several layers passing a waypoint in each (as Sugiyama layouts
    do), then two barycentre sweeps to untangle each layer. ``direction`` is ``LR`` (layers
    left to right, as Prefect draws runs), ``TB`` (top to bottom) or ``auto``: LR while it
    fits in ``max_width`` pixels, TB for longer chains (notebooks tend to be long chains, and
    a notebook output scrolls down better than sideways).

    Each gap between two layers has three stretches: labels beside the edges leaving the
    layer before, where edges bend, labels beside the edges entering the layer after (then
    the arrowheads). Edges run straight through the label stretches and bend only in the
    middle one, so a label is checked against straight stubs: one that would cross an edge,
    a node or another label goes to the stub's other side, or is not drawn (the edge keeps
    its names as its tooltip). With more than ``edge_labels`` edges no label is drawn."""
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

    shown = edge_labels is None or len(edge_names) <= edge_labels
    edges = [
        Edge(src, dst, names, label_lines(names) if shown else [])
        for (src, dst), names in edge_names.items()
    ]
    slots = dict(nodes)  # the nodes and the waypoints
    for i, e in enumerate(edges):
        a, b = nodes[e.src], nodes[e.dst]
        if b.layer <= a.layer:  # a loop's edge (only after condensing): an arc, no label
            e.lines = []
        for k in range(a.layer + 1, b.layer):
            via = slots[f"\0via{i}:{k}"] = Node(f"\0via{i}:{k}", "", [], layer=k, virtual=True)
            e.via.append(via.id)
    layers: dict[int, list[Node]] = {}
    for node in slots.values():  # creation order is the first guess within a layer
        layers.setdefault(node.layer, []).append(node)
    preds: dict[str, list[str]] = {n: [] for n in slots}
    succs: dict[str, list[str]] = {n: [] for n in slots}
    for e in edges:
        chain = [e.src, *e.via, e.dst]
        for u, v in itertools.pairwise(chain):
            preds[v].append(u)
            succs[u].append(v)

    def sweep(keys: Iterable[int], nbrs: dict[str, list[str]]) -> None:
        for k in keys:
            layer = layers[k]
            for node in layer:
                ps = [slots[p].order for p in nbrs[node.id]]
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

    n_layers = len(layers)
    outs = {n: sum(1 for e in edges if e.src == n) for n in nodes}
    ins = {n: sum(1 for e in edges if e.dst == n) for n in nodes}
    for e in edges:
        e.near_source = outs[e.src] <= ins[e.dst]

    def gaps(across: bool) -> tuple[list[float], list[tuple[float, float]]]:
        """The gap after each layer, and its two label stretches (after the layer, before
        the next), for TB (``across``: labels stack lines) or LR (labels take their width)."""
        bands = [[0.0, 0.0] for _ in range(max(n_layers - 1, 0))]
        for e in edges:
            if not e.lines:
                continue
            size = len(e.lines) * LINE_H if across else max(map(len, e.lines)) * CHAR_W
            k, end = (nodes[e.src].layer, 0) if e.near_source else (nodes[e.dst].layer - 1, 1)
            bands[k][end] = max(bands[k][end], size + NODE_ROOM + LABEL_PAD)
        least = TB_GAP_Y if across else GAP_X
        sizes = [max(least, s + BEND + d + ARROW_ROOM) for s, d in bands]
        return sizes, [(s, d) for s, d in bands]

    def extent(layer: list[Node], size: float, gap: float) -> float:
        return sum(VIA_W if n.virtual else size for n in layer) + max(len(layer) - 1, 0) * gap

    lr_gaps, lr_bands = gaps(False)
    lr_width = PAD * 2 + n_layers * NODE_W + sum(lr_gaps)
    if direction == "auto":
        direction = "LR" if lr_width <= max_width or n_layers <= 2 else "TB"
    tb = direction == "TB"
    sizes, bands = gaps(True) if tb else (lr_gaps, lr_bands)
    # along: the layers' axis (x in LR, y in TB); across: the axis a layer spreads along
    thick, wide, spacing = (NODE_H, NODE_W, TB_GAP_X) if tb else (NODE_W, NODE_H, GAP_Y)
    span = max((extent(v, wide, spacing) for v in layers.values()), default=0.0)
    start: float = PAD
    for k in keys:
        pos = PAD + (span - extent(layers[k], wide, spacing)) / 2
        for node in layers[k]:
            node.x, node.y = (pos, start) if tb else (start, pos)
            pos += (VIA_W if node.virtual else wide) + spacing
        start += thick + (sizes[k] if k < len(sizes) else 0)
    width, height = (PAD * 2 + span, start + PAD) if tb else (start + PAD, PAD * 2 + span)

    ports = _ports(edges, slots, tb)
    sample = any(e.lines for e in edges)  # the polylines are only needed to place labels
    paths = [_route(e, slots, bands, ports, tb, sample) for e in edges]
    if sample:
        _place_labels(edges, nodes, bands, tb)
    boxes = [label_box(e) for e in edges if e.lines]
    # a label left of (TB) or above (LR) a stub near the border: move everything to fit it
    dx = max([0.0] + [LABEL_PAD - b[0] for b in boxes])
    dy = max([0.0] + [LABEL_PAD - b[1] for b in boxes])
    for node in slots.values():
        node.x, node.y = node.x + dx, node.y + dy
    for e, cmds in zip(edges, paths, strict=True):
        e.points = [(x + dx, y + dy) for x, y in e.points]
        e.label_x, e.label_y = e.label_x + dx, e.label_y + dy
        e.path = " ".join(
            c + " ".join(f"{x + dx:.1f},{y + dy:.1f}" for x, y in pts) for c, pts in cmds
        )
    right = max([0.0] + [b[2] + dx for b in boxes])
    bottom = max([0.0] + [b[3] + dy for b in boxes])
    width, height = width + dx, height + dy
    collapsed = any(n.grouped for n in nodes.values())
    return Layout(
        nodes,
        edges,
        max(float(width), right + PAD, 2.0 * PAD),
        max(float(height), bottom + PAD, 2.0 * PAD),
        collapsed,
        direction,
        sizes,
    )


def label_box(e: Edge) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) an edge's drawn label takes."""
    w = max(len(line) for line in e.lines) * CHAR_W
    return (e.label_x, e.label_y - 10, e.label_x + w, e.label_y + (len(e.lines) - 1) * LINE_H + 3)


Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, top, right, bottom


def _ports(edges: list[Edge], slots: dict[str, Node], tb: bool) -> dict[tuple[int, int], float]:
    """Where each edge leaves (``(id, 0)``) and enters (``(id, 1)``) its node, as a fraction
    of the node's side: the edges of one side spread in the order of their other ends, so
    they do not cross there and each has a straight stub of its own to carry its label."""
    sides: dict[tuple[str, int], list[tuple[float, int, Edge]]] = {}
    for i, e in enumerate(edges):
        chain = [slots[n] for n in (e.src, *e.via, e.dst)]
        sides.setdefault((e.src, 0), []).append((_across(chain[1], tb), i, e))
        sides.setdefault((e.dst, 1), []).append((_across(chain[-2], tb), i, e))
    out: dict[tuple[int, int], float] = {}
    for (_, end), group in sides.items():
        group.sort(key=lambda item: item[:2])
        for j, (_, _, e) in enumerate(group):
            out[(id(e), end)] = (j + 1) / (len(group) + 1)
    return out


def _across(n: Node, tb: bool) -> float:
    """A slot's position along its layer (x in TB, y in LR)."""
    return n.x if tb else n.y


def _route(
    e: Edge,
    slots: dict[str, Node],
    bands: list[tuple[float, float]],
    ports: dict[tuple[int, int], float],
    tb: bool,
    sample: bool = True,
) -> list[tuple[str, list[Point]]]:
    """The edge's path as SVG commands (M, L, C with their points) from its port on the
    source through each waypoint to its port on the destination: in each gap straight
    through the label stretches, bent in between. Sets ``e.points`` (the polyline; its
    curves only as their ends unless ``sample``)."""
    steps = 16 if sample else 1

    def xy(along: float, across: float) -> Point:
        return (across, along) if tb else (along, across)

    thick, wide = (NODE_H, NODE_W) if tb else (NODE_W, NODE_H)
    a, b = slots[e.src], slots[e.dst]
    a_along, b_along = (a.y, b.y) if tb else (a.x, b.x)
    start = (a_along + thick, _across(a, tb) + wide * ports[(id(e), 0)])
    end = (b_along, _across(b, tb) + wide * ports[(id(e), 1)])
    cmds: list[tuple[str, list[Point]]] = [("M", [xy(*start)])]
    points = [start]
    if b.layer <= a.layer:  # a loop's edge (only after condensing): an arc beside the layers
        c1, c2 = (start[0] + 40, start[1] - 60), (end[0] - 40, end[1] - 60)
        cmds.append(("C", [xy(*c1), xy(*c2), xy(*end)]))
        points += _cubic(start, c1, c2, end, steps)
    else:
        stops = [start]
        for v in (slots[n] for n in e.via):
            along = v.y if tb else v.x
            stops += [
                (along, _across(v, tb) + VIA_W / 2),
                (along + thick, _across(v, tb) + VIA_W / 2),
            ]
        stops.append(end)
        for k, (p, q) in enumerate(zip(stops[::2], stops[1::2], strict=True)):
            if k:  # straight through a waypoint's layer
                cmds.append(("L", [xy(*p)]))
                points.append(p)
            leave, enter = bands[a.layer + k]
            p1, q1 = (p[0] + leave, p[1]), (q[0] - ARROW_ROOM - enter, q[1])
            mid = (p1[0] + q1[0]) / 2
            c1, c2 = (mid, p1[1]), (mid, q1[1])
            cmds += [("L", [xy(*p1)]), ("C", [xy(*c1), xy(*c2), xy(*q1)]), ("L", [xy(*q)])]
            points += [p1, *_cubic(p1, c1, c2, q1, steps), q]
    e.points = [xy(*p) for p in points]
    return cmds


def _cubic(p0: Point, c1: Point, c2: Point, p3: Point, steps: int = 16) -> list[Point]:
    """Points along a cubic Bézier curve (its start left out)."""
    out = []
    for i in range(1, steps + 1):
        t = i / steps
        u = 1 - t
        w0, w1, w2, w3 = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        out.append(
            (
                w0 * p0[0] + w1 * c1[0] + w2 * c2[0] + w3 * p3[0],
                w0 * p0[1] + w1 * c1[1] + w2 * c2[1] + w3 * p3[1],
            )
        )
    return out


def crosses(points: list[Point], box: tuple[float, float, float, float]) -> bool:
    """Whether the polyline ``points`` passes through the box (left, top, right, bottom)
    (Liang-Barsky clipping of each segment)."""
    left, top, right, bottom = box
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        dx, dy = x1 - x0, y1 - y0
        t0, t1 = 0.0, 1.0
        for p, q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - top), (dy, bottom - y0)):
            if p == 0:
                if q < 0:
                    break
                continue
            r = q / p
            if p < 0:
                t0 = max(t0, r)
            else:
                t1 = min(t1, r)
            if t0 > t1:
                break
        else:
            return True
    return False


def _bounds(points: list[Point]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (min(xs), min(ys), max(xs), max(ys))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _Grid:
    """Boxes (and the polyline each stands for, if any) in square cells, to find the ones
    near a box without looking at all of them."""

    CELL = 96.0

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], list[tuple[Box, list[Point] | None]]] = {}

    def _keys(self, box: Box) -> Iterable[tuple[int, int]]:
        c = self.CELL
        for gx in range(math.floor(box[0] / c), math.floor(box[2] / c) + 1):
            for gy in range(math.floor(box[1] / c), math.floor(box[3] / c) + 1):
                yield gx, gy

    def add(self, box: Box, points: list[Point] | None = None) -> None:
        for key in self._keys(box):
            self.cells.setdefault(key, []).append((box, points))

    def near(self, box: Box) -> Iterable[tuple[Box, list[Point] | None]]:
        for key in self._keys(box):
            yield from self.cells.get(key, ())


def _place_labels(
    edges: list[Edge], nodes: dict[str, Node], bands: list[tuple[float, float]], tb: bool
) -> None:
    """Put each label beside its edge's straight stub in a label stretch: at its preferred
    end first, on one side then the other, then at the other end. A place is taken only if
    the label crosses no edge and keeps clear of every node and every label placed before
    (edges carrying more names are placed first); a label with no such place is not drawn."""
    # what a label must keep clear of, in cells of a grid: nodes (with room around them),
    # the edges in short pieces, the labels placed so far
    grid = _Grid()
    for n in nodes.values():
        grid.add(
            (n.x - NODE_ROOM, n.y - NODE_ROOM, n.x + NODE_W + NODE_ROOM, n.y + NODE_H + NODE_ROOM)
        )
    for e in edges:
        for i in range(0, len(e.points) - 1, 6):
            chunk = e.points[i : i + 7]
            grid.add(_bounds(chunk), chunk)
    for e in sorted((e for e in edges if e.lines), key=lambda e: -len(e.names)):
        w = max(map(len, e.lines)) * CHAR_W
        h = 13 + (len(e.lines) - 1) * LINE_H  # the box label_box() gives
        (sx, sy), (dx, dy) = e.points[0], e.points[-1]
        enter = bands[nodes[e.dst].layer - 1][1]
        if tb:  # below the source, or above the destination (and its arrowhead)
            ends = [(sx, sy + NODE_ROOM), (dx, dy - ARROW_ROOM - enter + LABEL_PAD)]
            spots = [[(x + LABEL_PAD, top), (x - LABEL_PAD - w, top)] for x, top in ends]
        else:  # after the source, or before the destination; above the stub or below it
            ends = [(sx + NODE_ROOM, sy), (dx - ARROW_ROOM - enter + LABEL_PAD, dy)]
            spots = [[(left, y - LABEL_PAD - h), (left, y + LABEL_PAD)] for left, y in ends]
        for left, top in spots[0] + spots[1] if e.near_source else spots[1] + spots[0]:
            box = (left, top, left + w, top + h)
            if any(
                _overlap(box, bb) and (pts is None or crosses(pts, box))
                for bb, pts in grid.near(box)
            ):
                continue
            e.label_x, e.label_y = left, top + 10
            grid.add(box)
            break
        else:
            e.lines = []


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
    lay = layout(run, max_nodes, direction, edge_labels=edge_labels)
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
    sub = subtitles or {}
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
        if e.lines:
            spans = "".join(
                f'<tspan x="{e.label_x:.1f}" dy="{0 if i == 0 else LINE_H}">{esc(line)}</tspan>'
                for i, line in enumerate(e.lines)
            )
            out.append(
                f'<text class="nb2f-edge-label" x="{e.label_x:.1f}" y="{e.label_y:.1f}" '
                f'font-size="10" fill="#374151" stroke="#ffffff" '
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


@dataclass
class _Row:
    """One row of a grouped timeline: its finished task runs folded into spans, the others
    kept to draw one by one."""

    name: str
    count: int = 0
    #: states of the folded (final) task runs
    final: dict[str, int] = field(default_factory=dict)
    #: [start, end, kind, state, task runs]: kind "bar" (a Running stretch, coloured by how it
    #: ended), "mark" (a task run that never ran, at its end) or "wait" (before a retry);
    #: sorted by start, none of one kind and state closer than a pixel to the next
    spans: list[list[Any]] = field(default_factory=list)
    pending: list[TaskRunView] = field(default_factory=list)


class _Fold:
    """The rows of one run view's grouped timeline, kept up to date from render to render:
    each finished task run is folded once into its row's spans, so a render costs what the
    rows, their spans (at most about one per pixel) and the unfinished task runs cost, not
    what the finished ones number. A task run's row is the one :func:`group_tasks` gives it."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.reset(by_name=False)

    def reset(self, by_name: bool) -> None:
        self.by_name = by_name
        self.seen = 0  # task runs of the view taken in so far (in creation order)
        self.rows: dict[str, _Row] = {}
        self.current_map: dict[str, str] = {}
        self.ready: list[tuple[_Row, TaskRunView]] = []  # final, not folded yet
        self.latest: float | None = None  # the latest end of a final task run

    def update(self, run: RunView) -> None:
        """Take in the task runs created since the last update; find the ones now final."""
        if self.seen > len(run.tasks):  # not the view this was made for: start again
            self.reset(by_name=False)
        for t in itertools.islice(run.tasks.values(), self.seen, None):
            self.seen += 1
            if not self.by_name:
                if t.map_index is None:
                    key = t.id
                elif t.map_index == 0 or t.name not in self.current_map:
                    key = self.current_map[t.name] = f"map:{t.name}:{t.id}"
                else:
                    key = self.current_map[t.name]
                if key not in self.rows and len(self.rows) >= self.max_rows:
                    # more rows than fit: one row per task name, as group_tasks() does
                    self.reset(by_name=True)
                    self.update(run)
                    return
            else:
                key = f"name:{t.name}"
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = _Row(t.name)
            row.count += 1
            row.pending.append(t)
        for row in self.rows.values():
            if any(t.final for t in row.pending):
                self.ready += [(row, t) for t in row.pending if t.final]
                row.pending = [t for t in row.pending if not t.final]
        for _, t in self.ready:
            if t.end is not None and (self.latest is None or t.end > self.latest):
                self.latest = t.end

    def fold(self, pixel: float) -> None:
        """Fold the task runs found final into their rows' spans; ``pixel``: the seconds one
        pixel of the time axis stands for now (it only grows while a run goes on, so spans
        merged once stay closer than a pixel)."""
        import bisect

        for row, t in self.ready:
            row.final[t.state] = row.final.get(t.state, 0) + 1
            segs = attempt_segments(t, t.end or 0.0)
            pieces: list[tuple[float, float, str, str]] = []
            if not segs and t.end is not None:
                pieces.append((t.end, t.end, "mark", t.state))
            for i, (a, b, outcome, _) in enumerate(segs):
                pieces.append((a, b, "bar", outcome if outcome in S.COLOURS else S.RUNNING))
                if i + 1 < len(segs):
                    pieces.append((b, segs[i + 1][0], "wait", ""))
            for a, b, kind, state in pieces:
                spans = row.spans
                i = bisect.bisect_left(spans, a, key=lambda s: s[0])
                # the nearest spans of the same kind and state before and after
                j = next((j for j in range(i - 1, -1, -1) if spans[j][2:4] == [kind, state]), None)
                if j is not None and spans[j][1] + pixel >= a:
                    span = spans[j]
                    span[1], span[4] = max(span[1], b), span[4] + 1
                else:
                    span = [a, b, kind, state, 1]
                    spans.insert(i, span)
                # a span grown over the next ones of its kind and state takes them in
                k = spans.index(span) + 1
                while k < len(spans) and spans[k][0] <= span[1] + pixel:
                    if spans[k][2:4] == [kind, state]:
                        nxt = spans.pop(k)
                        span[1], span[4] = max(span[1], nxt[1]), span[4] + nxt[4]
                    else:
                        k += 1
        self.ready = []


#: the folded rows of the run views a grouped timeline was drawn for (by id; dropped with
#: the view)
_folds: dict[int, _Fold] = {}


def _fold_of(run: RunView, max_rows: int) -> _Fold:
    import weakref

    fold = _folds.get(id(run))
    if fold is None or fold.max_rows != max_rows:
        fold = _folds[id(run)] = _Fold(max_rows)
        weakref.finalize(run, _folds.pop, id(run), None)
    return fold


def timeline_svg(
    run: RunView, max_rows: int = 60, width: int = 960, now: float | None = None
) -> str:
    """One bar per task run from start to end, coloured by state; each retry attempt is its
    own bar (the failed attempt orange, the wait before the next one dashed). Runs with more
    than ``max_rows`` task runs get one row per graph node (map calls or task names), where
    the bars of finished task runs closer than a pixel merge into one (its tooltip counts
    them): a render costs what is visible, not what the run has done so far."""
    if not run.tasks:
        return '<div class="nb2f-empty">No task runs yet.</div>'
    now = time.time() if now is None else now
    t0 = run.start or run.created or min((t.created or now) for t in run.tasks.values())
    label_w, row_h, top = 190, 20, 26
    plot_w = width - label_w - PAD
    fold = _fold_of(run, max_rows) if len(run.tasks) > max_rows else None
    if fold is not None:
        fold.update(run)
        rows: list[tuple[str, list[TaskRunView], _Row | None]] = [
            (f"{r.name} \u00d7{r.count}", r.pending, r) for r in fold.rows.values()
        ]
        latest = [fold.latest] if fold.latest is not None else []
        latest += [t.end for r in fold.rows.values() for t in r.pending if t.end is not None]
    else:
        rows = [(t.label, [t], None) for t in run.tasks.values()]
        latest = [t.end for t in run.tasks.values() if t.end is not None]
    if run.end is not None:
        t1 = run.end
    else:
        t1 = max([*latest, now if not run.final else t0])
    span = max(t1 - t0, 1e-3)
    if fold is not None:
        fold.fold(span / plot_w)
    height = top + len(rows) * row_h + PAD

    def X(ts: float) -> float:
        return label_w + (ts - t0) / span * plot_w

    out = [
        f'<svg class="nb2f-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" '
        f'data-rows="{len(rows)}">'
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
    for r, (label, group, folded) in enumerate(rows):
        y = top + r * row_h
        if folded is not None:
            counts = dict(folded.final)
            for t in group:
                counts[t.state] = counts.get(t.state, 0) + 1
            grp_state = group_state(counts)
        else:
            grp_state = group[0].state
        italic = ' font-style="italic"' if grp_state == S.NOT_RUN else ""
        out.append(
            f'<g class="nb2f-row" data-task="{esc(label)}" data-state="{esc(grp_state)}">'
            f'<text x="{label_w - 8}" y="{y + 14}" font-size="11" text-anchor="end" '
            f'fill="{"#6b7280" if grp_state == S.NOT_RUN else "#111827"}"{italic}>'
            f"{esc(_short(label, 28))}</text>"
        )
        if folded is not None:
            _draw_spans(out, folded, X, y, row_h, t0)
        for t in group:
            _draw_task(out, t, X, y, row_h, now)
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _draw_spans(out: list[str], row: _Row, X: Any, y: float, row_h: int, t0: float) -> None:
    """The folded spans of a row: merged bars, markers and retry waits."""
    for a, b, kind, state, n in row.spans:
        if kind == "wait":
            out.append(
                f'<line class="nb2f-wait" x1="{X(a):.1f}" y1="{y + row_h / 2}" '
                f'x2="{X(b):.1f}" y2="{y + row_h / 2}" stroke="#c2410c" '
                f'stroke-dasharray="3 2"/>'
            )
            continue
        fill, stroke, _, _ = S.colour(state)
        runs = f"{n} task runs" if n > 1 else "1 task run"
        when = f"+{format_duration(a - t0)}" + (f" to +{format_duration(b - t0)}" if b > a else "")
        tip = f"{row.name}: {runs} {state}, {when}"
        if kind == "mark":
            dash = ' stroke-dasharray="2 2"' if state == S.NOT_RUN else ""
            w, rx = X(b) - X(a) + 6, ""
        else:
            dash, w, rx = "", max(X(b) - X(a), 2.0), ' rx="2"'
        out.append(
            f'<rect class="nb2f-bar" data-state="{esc(state)}" data-count="{n}" '
            f'data-seconds="{b - a:.3f}" x="{X(a):.1f}" y="{y + 4}" width="{w:.1f}" '
            f'height="{row_h - 8}"{rx} fill="{fill}" stroke="{stroke}"{dash}>'
            f"<title>{esc(tip)}</title></rect>"
        )


def _draw_task(out: list[str], t: TaskRunView, X: Any, y: float, row_h: int, now: float) -> None:
    """One task run's bars: an attempt each (the waits between them dashed), or a marker at
    its end for one that never ran (Cached, NotRun, Cancelled)."""
    segs = attempt_segments(t, now)
    if not segs:
        if t.end is not None:
            fill, stroke, _, _ = S.colour(t.state)
            dash = ' stroke-dasharray="2 2"' if t.state == S.NOT_RUN else ""
            out.append(
                f'<rect class="nb2f-bar" data-state="{esc(t.state)}" x="{X(t.end):.1f}" '
                f'y="{y + 4}" width="6" height="{row_h - 8}" fill="{fill}" '
                f'stroke="{stroke}"{dash}><title>{esc(t.label)}: {esc(t.state)}'
                f"</title></rect>"
            )
        return
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
