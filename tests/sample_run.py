"""A recorded-looking run, as run events, for tests, screenshots and trying the panel without
running a flow: ``load_data -> features -> train (retried once) -> evaluate (fails) ->
register_model (NotRun)``, with a mapped ``score`` task and log records along the way."""

from __future__ import annotations

import time
from collections.abc import Callable

from nb2flow.runtime.core import states as S
from nb2flow.runtime.core.events import RunEvent


def sample_events(
    flow_run_id: str = "sample-run", t0: float | None = None, n_map: int = 3, fail: bool = True
) -> list[RunEvent]:
    t = time.time() - 10 if t0 is None else t0
    out: list[RunEvent] = []

    def ev(kind: str, dt: float, task: str | None = None, **data: object) -> None:
        # task run ids are unique across runs, as the runtime's are
        tid = f"{flow_run_id}.{task}" if task else None
        if kind == "task_run":
            data["upstream"] = [f"{flow_run_id}.{u}" for u in data["upstream"]]  # type: ignore[union-attr]
            data["edge_names"] = {f"{flow_run_id}.{u}": v for u, v in data["edge_names"].items()}  # type: ignore[union-attr]
        out.append(RunEvent(kind, t + dt, flow_run_id, tid, dict(data)))

    def log(dt: float, task: str | None, level: int, msg: str) -> None:
        names = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR"}
        ev("log", dt, task, level=level, levelname=names[level], message=msg, logger="nb2flow")

    ev(
        "flow_run",
        0,
        flow_name="duration-prediction",
        run_name="brave-otter",
        parameters={"train_path": "'data/green_2021-01.parquet'", "max_depth": "30"},
        pid=1,
        task_runner="threads",
    )
    ev("flow_state", 0.01, state=S.RUNNING, attempt=1, message="")

    def task(tid: str, name: str, up: dict[str, list[str]], map_index: int | None = None) -> None:
        ev(
            "task_run",
            0.02,
            tid,
            task_name=name,
            task_key=name,
            upstream=list(up),
            edge_names=up,
            map_index=map_index,
        )

    task("t1", "load_data", {})
    task("t2", "features", {"t1": ["df_train", "df_val"]})
    task("t3", "train", {"t2": ["X_train", "dv"]})
    for i in range(n_map):
        task(f"m{i}", "score", {"t2": ["X_val"]}, map_index=i)
    task("t4", "evaluate", {"t3": ["model"], **{f"m{i}": ["score"] for i in range(n_map)}})
    task("t5", "register_model", {"t4": ["rmse"]})

    def st(dt: float, tid: str, state: str, attempt: int = 1, **extra: object) -> None:
        extra.setdefault("message", "")
        ev("task_state", dt, tid, state=state, attempt=attempt, **extra)

    st(0.05, "t1", S.RUNNING)
    log(0.06, "t1", 20, "reading data/green_2021-01.parquet <b>not bold</b>")
    st(1.2, "t1", S.COMPLETED)
    st(1.25, "t2", S.RUNNING)
    log(1.3, "t2", 30, "dropped 12 rows with negative duration")
    st(2.4, "t2", S.COMPLETED)
    st(2.45, "t3", S.RUNNING)
    for i in range(n_map):
        st(2.46 + 0.05 * i, f"m{i}", S.RUNNING)
    st(3.1, "t3", S.RETRYING, error="ConnectionError: mlflow server not reachable")
    log(3.1, "t3", 30, "attempt 1 failed, retrying in 0.5s")
    for i in range(n_map):
        st(3.2 + 0.2 * i, f"m{i}", S.COMPLETED)
    st(3.6, "t3", S.RUNNING, attempt=2)
    log(3.7, "t3", 20, "training xgboost, max_depth=30")
    st(5.6, "t3", S.COMPLETED, attempt=2)
    st(5.65, "t4", S.RUNNING)
    if fail:
        tb = (
            "Traceback (most recent call last):\n"
            '  File "duration_prediction.py", line 88, in evaluate\n'
            "    rmse = mean_squared_error(y_val, y_pred, squared=False)\n"
            "ValueError: Found input variables with inconsistent numbers of samples: [100, 99]"
        )
        err = "ValueError: Found input variables with inconsistent numbers of samples: [100, 99]"
        st(6.0, "t4", S.FAILED, error=err, traceback=tb)
        st(6.01, "t5", S.NOT_RUN, message="upstream task evaluate failed")
        ev("flow_state", 6.05, state=S.FAILED, message="1 task failed", error=f"evaluate: {err}")
    else:
        st(6.0, "t4", S.COMPLETED)
        st(6.05, "t5", S.RUNNING)
        st(6.5, "t5", S.COMPLETED)
        ev("flow_state", 6.55, state=S.COMPLETED, message="")
    return out


def replay(events: list[RunEvent], emit: Callable[..., object], speed: float = 0.0) -> None:
    """Emit recorded events again (``emit`` is :func:`nb2flow.runtime.core.events.emit`), optionally
    sleeping ``speed`` x the original gaps, as a live run would."""
    prev = events[0].ts if events else 0.0
    for e in events:
        if speed:
            time.sleep(max(0.0, e.ts - prev) * speed)
        prev = e.ts
        emit(e.kind, e.flow_run_id, e.task_run_id, dict(e.data))


def record(*runs: list[RunEvent], timeout: float = 10) -> None:
    """Write recorded runs into the run store (``$NB2FLOW_HOME``) through the store's own
    recorder, as if they had just run; the recorder is closed afterwards."""
    from nb2flow.runtime.core import events
    from nb2flow.store import recording

    rec = recording.enable()
    try:
        for evs in runs:
            replay(evs, events.emit)
        if not rec.flush(timeout):
            raise TimeoutError("the run store did not take the events in time")
    finally:
        recording.disable()
