"""A run as observers see it, rebuilt from run events.

The panel applies live events to a :class:`RunView`; the store rebuilds one from its rows;
``nb2flow show`` and ``nb2flow report`` render one. One model, one way of reading events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.states import (
    CACHED,
    CANCELLED,
    COMPLETED,
    FAILED_STATES,
    FINAL_STATES,
    NOT_RUN,
    PENDING,
    RETRYING,
    RUNNING,
)


class _Span:
    """What task runs and flow runs share: a state and a start/end time."""

    state: str
    start: float | None
    end: float | None

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end if self.end is not None else self.start) - self.start

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds from its start to its end, or to ``now`` while it is not final."""
        if self.start is None:
            return None
        if self.end is not None or self.final:
            return (self.end if self.end is not None else self.start) - self.start
        return (time.time() if now is None else now) - self.start


@dataclass
class TaskRunView(_Span):
    id: str
    name: str
    task_key: str = ""
    upstream: list[str] = field(default_factory=list)
    edge_names: dict[str, list[str]] = field(default_factory=dict)
    map_index: int | None = None
    state: str = PENDING
    created: float | None = None
    start: float | None = None  # first time Running
    end: float | None = None  # time of the final state
    attempts: int = 0
    error: str | None = None
    traceback: str | None = None
    cached_from: str | None = None
    #: (state, timestamp, attempt) in order, retries included
    history: list[tuple[str, float, int]] = field(default_factory=list)
    #: a summary of what it returned (:mod:`nb2flow.runtime.observation.results`)
    result: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The name users see: the task's name, with ``[i]`` for a mapped run."""
        return self.name if self.map_index is None else f"{self.name}[{self.map_index}]"


@dataclass
class LogView:
    ts: float
    task_run_id: str | None
    level: int
    levelname: str
    message: str
    logger: str = ""


class StoredPart:
    """A part of a recorded artifact that stays in its file until it is read."""

    __slots__ = ("path", "size", "binary")

    def __init__(self, path: str, size: int, binary: bool) -> None:
        self.path, self.size, self.binary = path, size, binary

    def read(self) -> str | bytes | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        return data if self.binary else data.decode("utf-8", "replace")

    def __eq__(self, other: object) -> bool:
        """A stored part equals the content it holds (a live run's bytes or text)."""
        if isinstance(other, StoredPart):
            return self.read() == other.read()
        return self.read() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredPart({self.path!r}, {self.size})"


@dataclass
class ArtifactView:
    """Something a run displayed (:mod:`nb2flow.artifacts`): a MIME bundle with a kind."""

    ts: float
    task_run_id: str | None
    kind: str
    name: str
    #: MIME type -> content (str, bytes, or a :class:`StoredPart` of a recorded run)
    bundle: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    def get(self, mime: str) -> Any:
        """The content of one part (read from its file for a recorded run), or None."""
        part = self.bundle.get(mime)
        if isinstance(part, StoredPart):
            return part.read()
        return part

    def size(self, mime: str) -> int:
        part = self.bundle.get(mime)
        if isinstance(part, StoredPart):
            return part.size
        return len(part) if part is not None else 0

    @property
    def text(self) -> str:
        return str(self.get("text/plain") or "")


@dataclass
class RunView(_Span):
    id: str
    flow_name: str = ""
    run_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    state: str = PENDING
    created: float | None = None
    start: float | None = None
    end: float | None = None
    error: str | None = None
    traceback: str | None = None
    task_runner: str = ""
    pid: int | None = None
    tasks: dict[str, TaskRunView] = field(default_factory=dict)  # insertion = creation order
    logs: list[LogView] = field(default_factory=list)
    artifacts: list[ArtifactView] = field(default_factory=list)
    #: a summary of what the flow returned (Completed runs)
    result: dict[str, Any] | None = None
    #: the program that ran the flow and its working directory (when known), its tags
    script: str = ""
    cwd: str = ""
    tags: list[str] = field(default_factory=list)
    #: bumped on every applied event, so renderers can tell whether anything changed
    version: int = 0
    #: bumped on the events that change states (not logs, not artifacts)
    state_version: int = 0

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds the run has taken so far (or in all, once it is final)."""
        start = self.start if self.start is not None else self.created
        if start is None:
            return None
        if self.end is not None:
            return self.end - start
        return (time.time() if now is None else now) - start

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks.values():
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def apply(self, ev: RunEvent) -> None:
        """Fold one event into the view (events of other runs are ignored)."""
        if ev.flow_run_id != self.id:
            return
        self.version += 1
        d = ev.data
        kind = ev.kind
        if kind != "log" and kind != "artifact":
            self.state_version += 1
        if kind == "task_state":
            t = self.tasks.get(ev.task_run_id or "")
            if t is None:
                t = self.tasks[ev.task_run_id or ""] = TaskRunView(ev.task_run_id or "", "?")
            state = d.get("state", t.state)
            attempt = int(d.get("attempt") or t.attempts or 0)
            t.state = state
            t.attempts = max(t.attempts, attempt)
            t.history.append((state, ev.ts, attempt))
            if state == RUNNING and t.start is None:
                t.start = ev.ts
            if state in FINAL_STATES:
                t.end = ev.ts
                if t.start is None:
                    t.start = ev.ts
            elif state == RETRYING:
                t.error = d.get("error", t.error)
            if "error" in d:
                t.error = d["error"]
            if "traceback" in d:
                t.traceback = d["traceback"]
            if "cached_from" in d:
                t.cached_from = d["cached_from"]
            if "result" in d:
                t.result = d["result"]
        elif kind == "task_run":
            self.tasks[ev.task_run_id or ""] = TaskRunView(
                id=ev.task_run_id or "",
                name=d.get("task_name", "?"),
                task_key=d.get("task_key", ""),
                upstream=list(d.get("upstream") or ()),
                edge_names={k: list(v) for k, v in (d.get("edge_names") or {}).items()},
                map_index=d.get("map_index"),
                created=ev.ts,
            )
        elif kind == "log":
            self.logs.append(
                LogView(
                    ev.ts,
                    ev.task_run_id,
                    int(d.get("level", 20)),
                    d.get("levelname", "INFO"),
                    d.get("message", ""),
                    d.get("logger", ""),
                )
            )
        elif kind == "flow_state":
            self.state = d.get("state", self.state)
            if self.state == RUNNING and self.start is None:
                self.start = ev.ts
            if self.state in FINAL_STATES:
                self.end = ev.ts
            if "error" in d:
                self.error = d["error"]
            if "traceback" in d:
                self.traceback = d["traceback"]
            if "result" in d:
                self.result = d["result"]
        elif kind == "artifact":
            self.artifacts.append(
                ArtifactView(
                    ev.ts,
                    ev.task_run_id,
                    d.get("kind", "value"),
                    d.get("name", ""),
                    dict(d.get("bundle") or {}),
                    bool(d.get("truncated")),
                )
            )
        elif kind == "flow_run":
            self.flow_name = d.get("flow_name", self.flow_name)
            self.run_name = d.get("run_name", self.run_name)
            self.parameters = dict(d.get("parameters") or {})
            self.pid = d.get("pid")
            self.task_runner = d.get("task_runner", "")
            self.script = d.get("script", "")
            self.cwd = d.get("cwd", "")
            self.tags = list(d.get("tags") or ())
            self.created = ev.ts

    @classmethod
    def from_events(cls, flow_run_id: str, events: list[RunEvent]) -> RunView:
        view = cls(flow_run_id)
        for ev in events:
            view.apply(ev)
        return view

    def graph(self) -> Any:
        """The task-run graph as a networkx DiGraph (nodes: task run ids, with ``view``;
        edges: upstream -> downstream, with ``names``)."""
        import networkx as nx

        g = nx.DiGraph()
        for t in self.tasks.values():
            g.add_node(t.id, view=t)
        for t in self.tasks.values():
            for up in t.upstream:
                if up in self.tasks:
                    g.add_edge(up, t.id, names=list(t.edge_names.get(up, [])))
        return g


def format_duration(seconds: float | None) -> str:
    """A duration as people read it, the same on every surface: ``850µs``, ``3.2ms``,
    ``120ms``, ``4.5s``, ``2m 05s``, ``1h 02m`` (empty for None)."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}\u00b5s"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m}m {s:02d}s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h {rest // 60:02d}m"


def describe_result(summary: dict[str, Any] | None) -> str:
    """A result summary in a few words, the same on every surface: ``6.25``,
    ``pandas.DataFrame [70000x5]``, ``list [len 3] [1, 2, 3]``; a returned dict key by key
    (``rmse = 6.25; model = ...``), a ``nout`` task's items in parentheses."""
    if not summary:
        return ""
    items = summary.get("items")
    if isinstance(items, dict):
        return "; ".join(f"{k} = {_describe_one(v)}" for k, v in items.items()) or "{}"
    if isinstance(items, list):
        return "(" + "; ".join(_describe_one(v) for v in items) + ")"
    return _describe_one(summary)


def _describe_one(summary: dict[str, Any]) -> str:
    kind = summary.get("type", "?")
    text = summary.get("repr", "")
    if kind in ("int", "float", "bool", "NoneType", "str", "complex") and text:
        return str(text)
    details = []
    if "shape" in summary:
        details.append("x".join(str(n) for n in summary["shape"]))
    if "dtype" in summary:
        details.append(str(summary["dtype"]))
    if "len" in summary and "shape" not in summary:
        details.append(f"len {summary['len']}")
    head = text.splitlines()[0] if text else ""
    info = kind + (f" [{', '.join(details)}]" if details else "")
    return f"{info} {head}".strip() if head and head != kind else info


def progress_text(view: RunView) -> str:
    """Where a run's task runs are, in words, the same in the terminal and the panel:
    ``3 of 4 tasks completed, 1 running``; a failed run ``0 of 4 tasks completed, 1 failed,
    3 not run``."""
    counts = view.counts()
    ok = counts.get(COMPLETED, 0) + counts.get(CACHED, 0)
    parts = [f"{ok} of {len(view.tasks)} tasks completed"]
    for n, what in (
        (counts.get(CACHED, 0), "from cache"),
        (sum(n for s, n in counts.items() if s in FAILED_STATES), "failed"),
        (counts.get(RUNNING, 0) + counts.get(RETRYING, 0), "running"),
        (counts.get(NOT_RUN, 0), "not run"),
        (counts.get(CANCELLED, 0), "cancelled"),
    ):
        if n:
            parts.append(f"{n} {what}")
    return ", ".join(parts)
