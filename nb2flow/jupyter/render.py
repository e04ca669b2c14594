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
from nb2flow.runtime.core.model import LogView, RunView, TaskRunView, format_duration

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


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float
    collapsed: bool
    direction: str = "LR"


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

    tallest = max((len(v) for v in layers.values()), default=0)
    n_layers = len(layers)
    lr_width = PAD * 2 + n_layers * NODE_W + max(n_layers - 1, 0) * GAP_X
    if direction == "auto":
        direction = "LR" if lr_width <= max_width or n_layers <= 2 else "TB"
    if direction == "LR":
        width = lr_width
        height = PAD * 2 + tallest * NODE_H + max(tallest - 1, 0) * GAP_Y
        for k, layer in layers.items():
            top = (height - (len(layer) * NODE_H + (len(layer) - 1) * GAP_Y)) / 2
            for j, node in enumerate(layer):
                node.x = PAD + k * (NODE_W + GAP_X)
                node.y = top + j * (NODE_H + GAP_Y)
    else:
        width = PAD * 2 + tallest * NODE_W + max(tallest - 1, 0) * TB_GAP_X
        height = PAD * 2 + n_layers * NODE_H + max(n_layers - 1, 0) * TB_GAP_Y
        for k, layer in layers.items():
            left = (width - (len(layer) * NODE_W + (len(layer) - 1) * TB_GAP_X)) / 2
            for j, node in enumerate(layer):
                node.x = left + j * (NODE_W + TB_GAP_X)
                node.y = PAD + k * (NODE_H + TB_GAP_Y)
    edges = [Edge(s, d, names) for (s, d), names in edge_names.items()]
    collapsed = any(n.grouped for n in nodes.values())
    return Layout(nodes, edges, max(width, 2 * PAD), max(height, 2 * PAD), collapsed, direction)


# --------------------------------------------------------------------------- graph SVG


def _edge_path(a: Node, b: Node, direction: str) -> tuple[str, tuple[float, float]]:
    """An SVG path from node ``a`` to node ``b`` and where its label goes."""
    if direction == "LR":
        x1, y1, x2, y2 = a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2
        if x2 > x1:
            cx = (x1 + x2) / 2
            c = f"C{cx:.1f},{y1:.1f} {cx:.1f},{y2:.1f}"
        else:  # same or earlier layer (only after condensing a loop): arc above
            c = f"C{x1 + 40:.1f},{y1 - 60:.1f} {x2 - 40:.1f},{y2 - 60:.1f}"
        label = ((x1 + x2) / 2, (y1 + y2) / 2 - 3)
    else:
        x1, y1, x2, y2 = a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2, b.y
        if y2 > y1:
            cy = (y1 + y2) / 2
            c = f"C{x1:.1f},{cy:.1f} {x2:.1f},{cy:.1f}"
        else:  # arc to the left
            c = f"C{x1 - 60:.1f},{y1 + 40:.1f} {x2 - 60:.1f},{y2 - 40:.1f}"
        label = ((x1 + x2) / 2 + 4, (y1 + y2) / 2 + 3)
    return f"M{x1:.1f},{y1:.1f} {c} {x2:.1f},{y2:.1f}", label


def _node_title(node: Node) -> str:
    if node.grouped:
        parts = [f"{node.label}: {len(node.tasks)} task runs"]
        parts += [f"{s}: {c}" for s, c in sorted(node.counts.items())]
        errors = [t for t in node.tasks if t.error]
        if errors:
            parts.append(f"first error ({errors[0].label}): {errors[0].error}")
        return "\n".join(parts)
    t = node.tasks[0]
    parts = [t.label, f"state: {t.state}"]
    if t.duration is not None:
        parts.append(f"duration: {format_duration(t.duration)}")
    if t.attempts > 1:
        parts.append(f"attempts: {t.attempts}")
    if t.cached_from:
        parts.append(f"cached from run {t.cached_from}")
    if t.error:
        parts.append(f"error: {t.error}")
    return "\n".join(parts)


def _node_subtitle(node: Node) -> str:
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
    if t.duration is not None and ran(t):
        text += f" \u00b7 {format_duration(t.duration)}"
    if t.attempts > 1:
        text += f" \u00b7 try {t.attempts}"
    return text


def graph_svg(
    run: RunView,
    max_nodes: int = 60,
    edge_labels: int = 80,
    subtitles: dict[str, str] | None = None,
    direction: str = "auto",
) -> str:
    """The task graph as one ``<svg>``: nodes coloured by state (``data-state``), labelled with
    name and duration (or ``subtitles[node id]``: the flow plan shows cells); edges carry the
    variable names (visible label while there are at most ``edge_labels`` edges, always as a
    ``<title>`` tooltip)."""
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
        d, (lx, ly) = _edge_path(a, b, lay.direction)
        names = ", ".join(e.names)
        title = f"{a.label} \u2192 {b.label}" + (f": {names}" if names else "")
        out.append(
            f'<g class="nb2f-edge" data-src="{esc(e.src)}" data-dst="{esc(e.dst)}" '
            f'data-names="{esc(names)}"><title>{esc(title)}</title>'
            f'<path d="{d}" fill="none" stroke="#6b7280" stroke-width="1.4" '
            f'marker-end="url(#{mid})"/>'
        )
        if names and show_labels:
            out.append(
                f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="{anchor}" '
                f'fill="#374151" stroke="#ffffff" stroke-width="3" paint-order="stroke">'
                f"{esc(_short(names, 26))}</text>"
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
            f"<title>{esc(_node_title(node))}</title>"
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{NODE_W}" height="{NODE_H}" '
            f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>'
            f'<text x="{node.x + 10:.1f}" y="{node.y + 19:.1f}" font-size="13" '
            f'font-weight="600" fill="{color}"{italic}>{esc(_short(node.label, 21))}</text>'
            f'<text x="{node.x + 10:.1f}" y="{node.y + 36:.1f}" font-size="11" '
            f'fill="{color}"{italic}>{esc(sub.get(node.id) or _node_subtitle(node))}</text>'
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


def header_html(run: RunView, now: float | None = None) -> str:
    """Flow name, run name, state badge, elapsed time, parameters, counts per state and, for
    a failed run, which tasks failed and why."""
    title = esc(run.flow_name or "flow")
    name = f' <span class="nb2f-run">{esc(run.run_name)}</span>' if run.run_name else ""
    took = format_duration(run.elapsed(now))
    parts = [
        f'<div class="nb2f-head"><span class="nb2f-flow">{title}</span>{name} {badge(run.state)}'
        f' <span class="nb2f-elapsed">{esc(took)}</span></div>'
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
            + " ".join(f"{badge(s)}&nbsp;{c}" for s, c in counts.items())
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


def tasks_table_html(run: RunView, limit: int | None = None) -> str:
    """One row per task run: state, start (clock time and offset), duration, attempts, error.
    With ``limit``, failed and unfinished rows are kept first and the rest is counted."""
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
            duration, attempts = format_duration(t.duration), str(t.attempts or "")
        extra = f" from run {esc(t.cached_from)}" if t.cached_from else ""
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


def logs_html(
    run: RunView, task_run_id: str | None = None, min_level: int = 0, limit: int | None = None
) -> str:
    """Log lines (time, level, task, message), newest last; ``task_run_id`` keeps one task's,
    ``min_level`` drops quieter records, ``limit`` keeps the newest lines."""
    logs = [
        lg
        for lg in log_entries(run)
        if (task_run_id is None or lg.task_run_id == task_run_id) and lg.level >= min_level
    ]
    if not logs:
        return '<div class="nb2f-empty">No log records.</div>'
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
        lines.append(
            f'<div class="nb2f-log nb2f-lvl-{_level_class(lg.level)}" data-level="{esc(level)}" '
            f'data-task="{esc(lg.task_run_id or "")}"><span class="nb2f-ts">{fmt_clock(lg.ts)}'
            f'</span> <span class="nb2f-lvl">{esc(level)}</span> <span class="nb2f-who">{who}'
            f'</span> <span class="nb2f-msg">{esc(lg.message)}</span></div>'
        )
    return '<div class="nb2f-logs">' + "".join(lines) + "</div>"


def _level_class(level: int) -> str:
    if level >= 40:
        return "error"
    if level >= 30:
        return "warning"
    if level >= 20:
        return "info"
    return "debug"


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
.nb2f-scroll{overflow:auto;max-height:640px;background:#ffffff}
.nb2f-table{border-collapse:collapse;font-size:12px;width:100%;color:#111827}
.nb2f-table th{text-align:left;border-bottom:2px solid #d1d5db;padding:3px 8px;
 background:#f9fafb;position:sticky;top:0}
.nb2f-table td{border-bottom:1px solid #e5e7eb;padding:3px 8px;vertical-align:top}
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
"""


def report_html(run: RunView, generated: float | None = None) -> str:
    """The whole run as one self-contained HTML page (inline CSS, SVG and a few lines of
    script for the log filter; nothing is fetched from anywhere)."""
    title = f"{run.flow_name or 'flow'} {run.run_name}".strip()
    options = "".join(
        f'<option value="{esc(t.id)}">{esc(t.label)}</option>'
        for t in run.tasks.values()
        if t.traceback or any(lg.task_run_id == t.id for lg in run.logs)
    )
    when = fmt_clock(time.time() if generated is None else generated)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{esc(title)} \u00b7 nb2flow run report</title>
<style>{CSS}
body{{margin:16px 24px;background:#ffffff}} h2{{font-size:15px;margin:18px 0 6px 0;
border-bottom:1px solid #e5e7eb;padding-bottom:3px}} .nb2f-foot{{color:#6b7280;font-size:11px;
margin-top:18px}} select{{margin:0 0 6px 0}}
</style></head>
<body class="nb2f" data-run="{esc(run.id)}">
<section id="header">{header_html(run)}</section>
<h2>Graph</h2><div class="nb2f-scroll" id="graph">{graph_svg(run)}</div>
<h2>Timeline</h2><div class="nb2f-scroll" id="timeline">{timeline_svg(run)}</div>
<h2>Tasks</h2><div id="tasks">{tasks_table_html(run)}</div>
<h2>Logs</h2>
<label>task <select id="log-task"><option value="">all tasks</option>{options}</select></label>
<label>level <select id="log-level"><option value="0">all levels</option>
<option value="20">INFO+</option><option value="30">WARNING+</option>
<option value="40">ERROR+</option></select></label>
<div id="logs">{logs_html(run)}</div>
<div class="nb2f-foot">flow run {esc(run.id)} \u00b7 report generated by nb2flow at {esc(when)}</div>
<script>
(function(){{
  var LV={{DEBUG:10,INFO:20,WARNING:30,ERROR:40,CRITICAL:50}};
  function apply(){{
    var t=document.getElementById('log-task').value;
    var l=+document.getElementById('log-level').value;
    document.querySelectorAll('#logs .nb2f-log').forEach(function(e){{
      var lv=LV[e.dataset.level]||0;
      e.style.display=((!t||e.dataset.task===t)&&lv>=l)?'':'none';
    }});
  }}
  document.getElementById('log-task').onchange=apply;
  document.getElementById('log-level').onchange=apply;
}})();
</script>
</body></html>
"""
