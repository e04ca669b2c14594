"""Run events reach subscribers; RunView folds them into the run observers see."""

from __future__ import annotations

from nb2flow.runtime.core import events
from nb2flow.runtime.core.model import RunView


def _run_events() -> list[events.RunEvent]:
    E = events.RunEvent
    return [
        E(
            "flow_run",
            1.0,
            "f1",
            None,
            {
                "flow_name": "demo",
                "run_name": "brave-otter",
                "parameters": {"n": "3"},
                "pid": 42,
                "task_runner": "threads",
            },
        ),
        E("flow_state", 1.0, "f1", None, {"state": "Running"}),
        E("task_run", 1.1, "f1", "a", {"task_name": "load", "task_key": "load", "upstream": []}),
        E(
            "task_run",
            1.1,
            "f1",
            "b",
            {
                "task_name": "train",
                "task_key": "train",
                "upstream": ["a"],
                "edge_names": {"a": ["df"]},
            },
        ),
        E("task_state", 1.2, "f1", "a", {"state": "Running", "attempt": 1}),
        E("task_state", 1.3, "f1", "a", {"state": "Retrying", "attempt": 1, "error": "boom"}),
        E("task_state", 1.4, "f1", "a", {"state": "Running", "attempt": 2}),
        E("task_state", 1.6, "f1", "a", {"state": "Completed", "attempt": 2}),
        E("log", 1.5, "f1", "a", {"level": 20, "levelname": "INFO", "message": "hi"}),
        E(
            "task_state",
            1.7,
            "f1",
            "b",
            {
                "state": "Failed",
                "attempt": 1,
                "error": "ValueError: x",
                "traceback": "Traceback ...",
            },
        ),
        E("flow_state", 1.8, "f1", None, {"state": "Failed", "error": "ValueError: x"}),
        E("task_state", 1.9, "other", "z", {"state": "Completed"}),
    ]


def test_subscribers_receive_events_and_a_broken_one_does_not_stop_others() -> None:
    seen: list[events.RunEvent] = []

    def broken(ev: events.RunEvent) -> None:
        raise RuntimeError("observer bug")

    events.subscribe(broken)
    events.subscribe(seen.append)
    try:
        ev = events.emit("log", "f1", "t1", {"message": "x"})
    finally:
        events.unsubscribe(broken)
        events.unsubscribe(seen.append)
    assert seen == [ev]
    assert ev.kind == "log" and ev.task_run_id == "t1" and ev.ts > 0
    events.emit("log", "f1")  # no longer subscribed
    assert len(seen) == 1


def test_run_view_folds_events() -> None:
    view = RunView.from_events("f1", _run_events())
    assert (view.flow_name, view.run_name, view.pid) == ("demo", "brave-otter", 42)
    assert view.state == "Failed" and view.error == "ValueError: x"
    assert view.start == 1.0 and view.end == 1.8
    a, b = view.tasks["a"], view.tasks["b"]
    assert a.state == "Completed" and a.attempts == 2
    assert [s for s, _, _ in a.history] == ["Running", "Retrying", "Running", "Completed"]
    assert a.start == 1.2 and a.end == 1.6 and round(a.duration or 0, 6) == 0.4
    assert b.state == "Failed" and b.traceback == "Traceback ..." and b.start == b.end == 1.7
    assert "z" not in view.tasks  # another run's event
    assert view.counts() == {"Completed": 1, "Failed": 1}
    assert [log.message for log in view.logs] == ["hi"]
    g = view.graph()
    assert list(g.edges(data="names")) == [("a", "b", ["df"])]
