"""A run as observers see it, rebuilt from run events.

The panel applies live events to a :class:`RunView`; the store rebuilds one from its rows;
``nb2flow show`` and ``nb2flow report`` render one. One model, one way of reading events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nb2flow.runtime.core.events import RunEvent
from nb2flow.runtime.core.states import FINAL_STATES, PENDING, RETRYING, RUNNING


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
    #: bumped on every applied event, so renderers can tell whether anything changed
    version: int = 0

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
        elif kind == "flow_run":
            self.flow_name = d.get("flow_name", self.flow_name)
            self.run_name = d.get("run_name", self.run_name)
            self.parameters = dict(d.get("parameters") or {})
            self.pid = d.get("pid")
            self.task_runner = d.get("task_runner", "")
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
