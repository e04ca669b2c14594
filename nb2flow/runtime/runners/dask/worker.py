"""What runs on the Dask workers: one task run (:func:`run_task`), the small helper tasks that
pick an item or the state of an upstream run (:func:`select`), and the fetch of a value to the
flow process (:func:`pack_value`). The flow side refers to these functions by name: every
worker imports this module."""

from __future__ import annotations

import numbers
from typing import Any

from nb2flow.runtime.core.tracebacks import error_line, format_traceback
from nb2flow.runtime.engine.attempts import execute
from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.engine.lifetime import allow_children
from nb2flow.runtime.engine.payload import CONTAINERS
from nb2flow.runtime.engine.transport import pack_outcome, sendable_outcome, type_name

#: The event topic every nb2flow run on a cluster streams through (one fixed topic, so a
#: long-lived scheduler keeps a bounded log; messages carry the runner's token).
TOPIC = "nb2flow-events"
#: A value whose pickle is at most this many bytes, made of numbers and short strings, is
#: sent to the flow process with the final state (no round trip for metrics and counts).
INLINE_LIMIT = 4096
STATE = "state"  # selector: the upstream's state without its value


def _small(value: Any, depth: int = 0) -> bool:
    """Numbers, short strings and small containers of them (cheap to check, no pickling)."""
    if value is None or isinstance(value, (bool, numbers.Number)):
        return True
    if isinstance(value, (str, bytes)):
        return len(value) <= INLINE_LIMIT
    if type(value) in CONTAINERS and depth < 3 and len(value) <= 64:
        items = value.items() if type(value) is dict else ((v, None) for v in value)
        return all(_small(k, depth + 1) and _small(v, depth + 1) for k, v in items)
    return False


def inline_blob(outcome: Outcome, limit: int) -> bytes | None:
    if limit <= 0 or not outcome.ok or not _small(outcome.value):
        return None
    import cloudpickle

    try:
        blob = cloudpickle.dumps(outcome.value)
    except Exception:  # noqa: BLE001 - then it is fetched like any other value
        return None
    return blob if len(blob) <= limit else None


def about(outcome: Outcome, keep_exc: bool = True) -> dict[str, Any]:
    """An outcome's fields but its state and value, as keyword arguments of ``Outcome``."""
    return {
        "exc": outcome.exc if keep_exc else None,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "attempt": outcome.attempt,
        "ts": outcome.ts,
        "message": outcome.message,
        "cached_from": outcome.cached_from,
        "result": outcome.result,
    }


def summary(outcome: Outcome, keep_exc: bool = True) -> Outcome:
    """The outcome without its value (what the flow process needs to know)."""
    return Outcome(outcome.state, **about(outcome, keep_exc))


def run_task(trid: str, blob: bytes, upstream: list[Any], token: str, inline_limit: int) -> Outcome:
    """The Dask task of one task run: execute it here, stream its events, keep its value."""
    import cloudpickle
    from distributed import get_worker

    worker = get_worker()
    log_event = worker.log_event  # thread-safe; keeps the order of the calls

    def sink(ev: Any) -> None:
        log_event(TOPIC, [token, trid, "event", cloudpickle.dumps(ev), None])

    try:
        payload = cloudpickle.loads(blob)
        if getattr(payload.task, "hard_timeout", False):
            # each attempt runs in a child process; Dask starts its workers as daemons
            # (Dask's own switch, ``distributed.worker.daemon: false``, is read where the
            # nanny runs: this does the same for this worker process only)
            allow_children()
        outcome = execute(payload, upstream, sink)
        # A value that cannot be pickled would make Dask wait forever to move it to a
        # reader on another worker, and fail the flow at the end: the run tells the truth
        # here, as on the process pool (items of a nout task become markers).
        outcome = sendable_outcome(outcome, payload)
        for ev in outcome.events or ():  # the WARNING of each item replaced by a marker
            sink(ev)
        outcome.events = None
    except BaseException as exc:  # noqa: BLE001 - e.g. the task's module is missing here
        outcome = Outcome.failed(
            None,
            error=f"cannot run on the Dask worker {worker.address}: {error_line(exc)}",
            traceback=format_traceback(exc),
        )
    inline = inline_blob(outcome, inline_limit)
    log_event(TOPIC, [token, trid, "done", pack_outcome(summary(outcome)), inline])
    if not outcome.ok:
        # downstream runs only read the state; an exception object may not travel
        outcome = summary(outcome, keep_exc=False)
    return outcome


def select(outcome: Outcome, selector: Any) -> Outcome:
    """A small Dask task: item ``selector`` of an upstream outcome, or its state only (an
    item that cannot be pickled is already a marker: see :func:`run_task`)."""
    if selector == STATE or not outcome.ok:
        return summary(outcome, keep_exc=False)
    return Outcome(outcome.state, outcome.value[selector], attempt=outcome.attempt, ts=outcome.ts)


def pack_value(outcome: Outcome, task_name: str, nout: int | None, item: int | None) -> Any:
    """A small Dask task fetching a finished run's value (``item`` None) or one item of a
    ``nout`` task to the flow process: ``(pickled value, None)``, or ``(None, why)`` when it
    cannot be pickled (:func:`run_task` already failed such runs, and replaced the items
    of a ``nout`` task that cannot travel by markers: this is the safety net)."""
    import cloudpickle

    if not outcome.ok:
        return None, f"the task run is {outcome.state}"
    value = outcome.value if item is None else outcome.value[item]
    try:
        return cloudpickle.dumps(value), None
    except Exception as exc:  # noqa: BLE001 - any reason pickling fails
        return None, f"{type_name(value)}: {error_line(exc)}"


def fallback_summary(outcome: Outcome, inline_limit: int) -> tuple[bytes, bytes | None]:
    return pack_outcome(summary(outcome)), inline_blob(outcome, inline_limit)


# ---------------------------------------------------------------------------- flow side
