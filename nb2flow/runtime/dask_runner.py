"""The Dask task runner: task runs become futures on a ``distributed`` cluster.

Choose it with ``@flow(task_runner="dask")`` (a LocalCluster sized to the machine, or the
default ``distributed.Client`` if one exists in the process), ``"dask:4"`` (a LocalCluster
of 4 worker processes), ``"dask://host:8786"`` / ``"tcp://host:8786"`` (an existing
scheduler), ``--executor ...`` on a flow script's command line, ``NB2FLOW_TASK_RUNNER``, or a
:class:`DaskRunner` object (``DaskRunner(address=...)``, ``DaskRunner(cluster=...)``,
``DaskRunner(client=...)``).

How it works (see ``docs/dask.md``):

* Every task run is one Dask task, ``_run_task``, which calls
  :func:`nb2flow.runtime.engine.execute` on the worker (cache, retries, timeouts, NotRun).
  Its Dask result is the run's whole :class:`~nb2flow.runtime.futures.Outcome`, value
  included, and it stays on the worker: downstream task runs receive it worker to worker
  (``resolves_upstream = True``), never through the flow process.
* A downstream run that reads one item of a ``nout=N`` task gets a small Dask task that
  picks that item (``<task>.item<i>-<id>``); one that only waits for it (``wait_for``) gets
  the state without the value (``<task>.state-<id>``).
* Submissions are batched: calls arriving within a millisecond of each other (a
  ``.map()``, a flow body submitting its graph) go to the scheduler in one ``client.map``
  per dependency level.
* Events (Running, Retrying, logs) are streamed live: the worker logs them on the topic
  ``nb2flow-events`` (``Worker.log_event``), the flow process subscribes to it and
  publishes them, then the run's final outcome (without its value, unless the value is a
  small scalar or string) arrives the same way, after all of them. The Dask future's own
  completion is the backstop: a run whose worker died (``KilledWorker``) becomes Crashed,
  and a run whose final message went missing has its outcome fetched from the cluster.
* Values are fetched from the cluster only when the flow process asks for them
  (``future.result()``, futures in the flow's return value). They are released when the
  flow run ends.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.engine import _CONTAINERS, Ref, TaskPayload, error_line
from nb2flow.runtime.futures import Outcome
from nb2flow.runtime.runners import TaskRunner, pack_outcome
from nb2flow.runtime.states import CANCELLED, CRASHED, NOT_RUN

#: The event topic every nb2flow run on a cluster streams through (one fixed topic, so a
#: long-lived scheduler keeps a bounded log; messages carry the runner's token).
TOPIC = "nb2flow-events"
#: A value whose pickle is at most this many bytes, made of numbers and short strings, is
#: sent to the flow process with the final state (no round trip for metrics and counts).
INLINE_LIMIT = 4096
#: Payloads above this size are scattered to a worker instead of going through the
#: scheduler inside the task graph.
SCATTER_LIMIT = 1 << 20
#: How long submissions are gathered into one batch (seconds), and the batch cap.
BATCH_WINDOW = 0.001
BATCH_MAX_WAIT = 0.05
BATCH_MAX = 5000

_STATE = "state"  # selector: the upstream's state without its value


# ------------------------------------------------------------------------- worker side


def _small(value: Any, depth: int = 0) -> bool:
    """Numbers, short strings and small containers of them (cheap to check, no pickling)."""
    if value is None or isinstance(value, (bool, numbers.Number)):
        return True
    if isinstance(value, (str, bytes)):
        return len(value) <= INLINE_LIMIT
    if type(value) in _CONTAINERS and depth < 3 and len(value) <= 64:
        items = value.items() if type(value) is dict else ((v, None) for v in value)
        return all(_small(k, depth + 1) and _small(v, depth + 1) for k, v in items)
    return False


def _inline_blob(outcome: Outcome, limit: int) -> bytes | None:
    if limit <= 0 or not outcome.ok or not _small(outcome.value):
        return None
    import cloudpickle

    try:
        blob = cloudpickle.dumps(outcome.value)
    except Exception:  # noqa: BLE001 - then it is fetched like any other value
        return None
    return blob if len(blob) <= limit else None


def _about(outcome: Outcome, keep_exc: bool = True) -> dict[str, Any]:
    """An outcome's fields but its state and value, as keyword arguments of ``Outcome``."""
    return {
        "exc": outcome.exc if keep_exc else None,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "attempt": outcome.attempt,
        "ts": outcome.ts,
        "message": outcome.message,
        "cached_from": outcome.cached_from,
    }


def _summary(outcome: Outcome, keep_exc: bool = True) -> Outcome:
    """The outcome without its value (what the flow process needs to know)."""
    return Outcome(outcome.state, **_about(outcome, keep_exc))


def _run_task(
    trid: str, blob: bytes, upstream: list[Any], token: str, inline_limit: int
) -> Outcome:
    """The Dask task of one task run: execute it here, stream its events, keep its value."""
    import cloudpickle
    from distributed import get_worker

    from nb2flow.runtime.engine import execute, format_traceback
    from nb2flow.runtime.states import FAILED

    worker = get_worker()
    log_event = worker.log_event  # thread-safe; keeps the order of the calls

    def sink(ev: Any) -> None:
        log_event(TOPIC, [token, trid, "event", cloudpickle.dumps(ev), None])

    try:
        payload = cloudpickle.loads(blob)
        if getattr(payload.task, "hard_timeout", False):
            _allow_children()
        outcome = execute(payload, upstream, sink)
    except BaseException as exc:  # noqa: BLE001 - e.g. the task's module is missing here
        outcome = Outcome(
            FAILED,
            error=f"cannot run on the Dask worker {worker.address}: {error_line(exc)}",
            traceback=format_traceback(exc),
            ts=time.time(),
        )
    inline = _inline_blob(outcome, inline_limit)
    log_event(TOPIC, [token, trid, "done", pack_outcome(_summary(outcome)), inline])
    if not outcome.ok:
        # downstream runs only read the state; an exception object may not travel
        outcome = _summary(outcome, keep_exc=False)
    return outcome


def _allow_children() -> None:
    """Let this worker process start child processes (``hard_timeout`` runs each attempt in
    one). Dask starts its workers as daemonic processes, which multiprocessing forbids to
    have children; Dask's own switch is the ``distributed.worker.daemon: false`` setting,
    read where the nanny runs. Clearing the flag here does the same for this worker
    process only, whatever the cluster's configuration."""
    import multiprocessing

    proc = multiprocessing.current_process()
    if proc.daemon:
        proc._config["daemon"] = False  # type: ignore[attr-defined]


def _select(outcome: Outcome, selector: Any, task_name: str = "") -> Outcome:
    """A small Dask task: item ``selector`` of an upstream outcome, or its state only.

    An item that cannot be pickled becomes an :class:`~nb2flow.runtime.futures.Unavailable`
    marker (the reader fails with a clear error): Dask would otherwise wait forever to move
    it to a reader on another worker."""
    if selector == _STATE or not outcome.ok:
        return _summary(outcome, keep_exc=False)
    from nb2flow.runtime.futures import sendable

    item = sendable(outcome.value[selector], task_name, selector)
    return Outcome(outcome.state, item, attempt=outcome.attempt, ts=outcome.ts)


def _pack_value(outcome: Outcome, task_name: str, nout: int | None, item: int | None) -> Any:
    """A small Dask task fetching a finished run's value (``item`` None) or one item of a
    ``nout`` task to the flow process: ``(pickled value, None)``, or ``(None, why)`` when it
    cannot be pickled. Pickled here, so a value that cannot travel is found on the worker
    (no serialization error in the worker's log); an item of a ``nout`` task that cannot
    be pickled is replaced by an :class:`~nb2flow.runtime.futures.Unavailable` marker."""
    import cloudpickle

    from nb2flow.runtime.futures import Unavailable, _type_name, sendable_items

    if not outcome.ok:
        return None, f"the task run is {outcome.state}"
    value = outcome.value if item is None else outcome.value[item]
    try:
        return cloudpickle.dumps(value), None
    except Exception as exc:  # noqa: BLE001 - any reason pickling fails
        reason = error_line(exc)
    if item is not None:
        marker = Unavailable(_type_name(value), reason, task_name, item)
        return cloudpickle.dumps(marker), None
    why = f"{_type_name(value)}: {reason}"
    if nout and type(value) in (tuple, list):
        try:
            return cloudpickle.dumps(sendable_items(value, task_name)[0]), None
        except Exception as exc:  # noqa: BLE001
            why = error_line(exc)
    return None, why


def _fallback_summary(outcome: Outcome, inline_limit: int) -> tuple[bytes, bytes | None]:
    return pack_outcome(_summary(outcome)), _inline_blob(outcome, inline_limit)


# ---------------------------------------------------------------------------- flow side

_VALUE = Outcome.__dict__["value"]  # the slot under the property below


class RemoteOutcome(Outcome):
    """An outcome whose value is still on the cluster: fetched on first access, whole
    (``value``) or one item of a ``nout`` task at a time (:meth:`item`)."""

    __slots__ = ("_fetch", "_items", "_fetch_lock")

    def __init__(self, summary: Outcome, fetch: Any) -> None:
        super().__init__(summary.state, None, **_about(summary))
        #: ``fetch(None)`` gets the value, ``fetch(i)`` its item i; None once fetched
        self._fetch = fetch
        self._items: dict[int, Any] = {}
        self._fetch_lock = threading.Lock()

    @property  # type: ignore[override]
    def value(self) -> Any:
        if self._fetch is not None:
            with self._fetch_lock:
                if self._fetch is not None:
                    _VALUE.__set__(self, self._fetch(None))
                    self._fetch = None
                    self._items.clear()
        return _VALUE.__get__(self)

    @value.setter
    def value(self, v: Any) -> None:
        _VALUE.__set__(self, v)

    def item(self, index: int) -> Any:
        """Item ``index`` of the value, fetching only that item (the other items of a
        ``nout`` task may be large, or impossible to send, e.g. an open file)."""
        with self._fetch_lock:
            fetch = self._fetch
            if fetch is not None and index not in self._items:
                self._items[index] = fetch(index)
            if fetch is not None:
                return self._items[index]
        return self.value[index]

    @property
    def fetched(self) -> bool:
        """Whether the whole value came to the flow process."""
        return self._fetch is None


# Events of every runner on a client arrive through one subscription; routes by token.
_routes: dict[str, queue.SimpleQueue[Any]] = {}
_subscriptions: dict[str, int] = {}
_routes_lock = threading.Lock()
_uploaded: set[tuple[str, str]] = set()


def _on_event(event: Any) -> None:
    # runs in the client's event loop: route, nothing more
    try:
        _ts, (token, trid, kind, a, b) = event
    except (TypeError, ValueError):  # someone else's message on the topic
        return
    q = _routes.get(token)
    if q is not None:
        q.put((trid, kind, a, b))


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise Nb2flowError(
            f"the dask task runner needs the 'distributed' package ({error_line(exc)}); "
            "install it with: pip install 'nb2flow[dask]'"
        ) from None
    return distributed


def _address(option: str) -> str:
    return option if "://" in option else f"tcp://{option}"


def _installed(path: str) -> bool:
    """Whether a module file belongs to the Python installation (stdlib, site-packages):
    such modules are imported by name on workers; others are shipped."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # some virtualenvs lack these
        pass
    real = os.path.realpath(path)
    return any(r and real.startswith(os.path.realpath(r) + os.sep) for r in roots)


class DaskRunner(TaskRunner):
    """Runs task runs on a Dask cluster (``distributed``).

    ``DaskRunner()`` / ``"dask"``: the process's default ``distributed.Client`` if there is
    one, else a ``LocalCluster`` sized to the machine, started for the flow run and closed
    after it. ``DaskRunner("4")`` / ``"dask:4"``: a LocalCluster of 4 worker processes.
    ``DaskRunner("host:8786")``, ``address="tcp://host:8786"``: an existing scheduler.
    ``cluster=``: any Dask cluster object (LocalCluster, KubeCluster, SLURMCluster...);
    ``client=``: a connected Client. Clusters and clients passed in are left running.

    ``cluster_kwargs`` go to ``LocalCluster``; ``connect_timeout`` (seconds, default
    Dask's ``distributed.comm.timeouts.connect``) bounds the wait for a scheduler;
    ``inline_limit`` is the largest pickled value sent back with the final state.
    """

    name = "dask"
    resolves_upstream = True

    def __init__(
        self,
        option: str | None = None,
        *,
        address: str | None = None,
        cluster: Any = None,
        client: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        connect_timeout: float | None = None,
        inline_limit: int = INLINE_LIMIT,
    ) -> None:
        super().__init__(option)
        _import_distributed()
        self.n_workers: int | None = None
        if option is not None and option.strip().isdigit():
            self.n_workers = int(option)
            if self.n_workers < 1:
                raise Nb2flowError(f"task runner dask:{option}: needs at least 1 worker")
        elif option:
            address = address or option
        self.address = _address(address) if address else None
        self.cluster = cluster
        self.client = client
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.connect_timeout = connect_timeout
        self.inline_limit = inline_limit
        #: counters: task runs submitted, ``client.map`` calls, helper tasks, fetches, final
        #: states fetched because their message did not come first, payloads scattered
        self.stats = {
            "submitted": 0,
            "graph_updates": 0,
            "helpers": 0,
            "fetched": 0,
            "fallbacks": 0,
            "scattered": 0,
        }
        self._lock = threading.Lock()
        self._starts = 0
        self._reset()

    def _reset(self) -> None:
        self._own_client = self._own_cluster = None
        self._active_client: Any = None
        self._token = ""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._calls: dict[str, Any] = {}
        self._ours: set[str] = set()
        self._submitted: list[Any] = []
        self._helpers: dict[tuple[str, Any], Any] = {}
        self._shipped: set[str] = set()
        self._announced: set[str] = set()
        self._prepared: dict[str, tuple[bytes, list[tuple[int, Any]]]] = {}
        self._pending: list[Any] = []
        self._waiting_foreign: dict[str, int] = {}
        self._wake = threading.Event()
        self._closing = False
        self._threads: list[threading.Thread] = []

    def describe(self) -> str:
        if self.address:
            return f"dask:{self.address}"
        if self.n_workers:
            return f"dask:{self.n_workers}"
        client = self._active_client or self.client
        if client is not None:
            return f"dask:{client.scheduler.address}"
        if self.cluster is not None:
            return f"dask:{self.cluster.scheduler_address}"
        return "dask"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._starts += 1
            if self._starts > 1:
                return
            self._reset()
        try:
            self._open()
        except BaseException:
            with self._lock:  # not started: the flow run will not call shutdown
                self._starts -= 1
            raise

    def _open(self) -> None:
        distributed = _import_distributed()
        timeout = self.connect_timeout
        if timeout is None:
            import dask

            timeout = dask.config.get("distributed.comm.timeouts.connect")
        where = f"the Dask scheduler at {self.address}"
        try:
            if self.client is not None:
                client = self.client
            elif self.cluster is not None:
                where = f"the Dask scheduler at {getattr(self.cluster, 'scheduler_address', '?')}"
                client = self._own_client = distributed.Client(
                    self.cluster, set_as_default=False, timeout=timeout
                )
            elif self.address is not None:
                client = self._own_client = distributed.Client(
                    self.address, set_as_default=False, timeout=timeout
                )
            else:
                client = self._default_client() if self.n_workers is None else None
                if client is None:
                    where = "a Dask LocalCluster (could not start it)"
                    # any free dashboard port: 8787 may be another cluster's (the first
                    # log line of the run gives the dashboard's address)
                    kwargs = {"processes": True, "dashboard_address": ":0", **self.cluster_kwargs}
                    if self.n_workers is not None:
                        kwargs.setdefault("n_workers", self.n_workers)
                        kwargs.setdefault("threads_per_worker", 1)
                    self._own_cluster = distributed.LocalCluster(**kwargs)
                    where = f"the Dask scheduler at {self._own_cluster.scheduler_address}"
                    client = self._own_client = distributed.Client(
                        self._own_cluster, set_as_default=False, timeout=timeout
                    )
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, CommClosedError...
            self._close_owned()
            raise Nb2flowError(f"cannot reach {where}: {error_line(exc)}") from None
        self._active_client = client
        self._token = uuid.uuid4().hex
        with _routes_lock:
            _routes[self._token] = self._queue
            if _subscriptions.get(client.id, 0) == 0:
                client.subscribe_topic(TOPIC, _on_event)
            _subscriptions[client.id] = _subscriptions.get(client.id, 0) + 1
        for target, label in ((self._drain, "drain"), (self._flush_loop, "submit")):
            th = threading.Thread(target=target, name=f"nb2flow-dask-{label}", daemon=True)
            th.start()
            self._threads.append(th)

    @staticmethod
    def _default_client() -> Any:
        if "distributed" not in sys.modules:
            return None
        from distributed import default_client

        try:
            client = default_client()
        except ValueError:
            return None
        return client if client.status == "running" else None

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            self._starts -= 1
            if self._starts > 0:
                return
            self._starts = 0
        client = self._active_client
        self._closing = True
        self._wake.set()
        with self._lock:
            left, self._pending = self._pending, []
        for call in left:
            call.finish(Outcome(CANCELLED, attempt=0, ts=time.time(), message="flow run ended"))
        if client is not None:
            if cancel:
                try:
                    client.cancel([c.future.handle for c in self._submitted if c.future.handle])
                except Exception:  # noqa: BLE001 - the cluster may be gone already
                    pass
            with _routes_lock:
                _routes.pop(self._token, None)
                n = _subscriptions.get(client.id, 0) - 1
                _subscriptions[client.id] = max(n, 0)
                if n <= 0 and client.status == "running":
                    try:
                        client.unsubscribe_topic(TOPIC)
                    except Exception:  # noqa: BLE001
                        pass
        # release what the run kept on the cluster (values not fetched by now are gone)
        for call in self._submitted:
            call.future.handle = None
        self._helpers.clear()
        self._queue.put(None)
        for th in self._threads:  # daemon threads: a lost scheduler must not block the exit
            if th is not threading.current_thread():
                th.join(2 if cancel else 10)
        self._close_owned()
        self._active_client = None

    def _close_owned(self) -> None:
        client, cluster = self._own_client, self._own_cluster
        self._own_client = self._own_cluster = None
        for obj in (client, cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing must not fail the run
                    pass

    # -- submission ----------------------------------------------------------------------

    def submit(self, call: Any) -> None:
        if call.flow_run.id not in self._announced:
            self._announce(call.flow_run)
        payload, plan = self._plan(call)
        self._ship(call.task)
        import cloudpickle

        blob = cloudpickle.dumps(payload)
        trid = payload.task_run_id
        with self._lock:
            # runs of another runner (a parent flow's), or of ours still waiting for one:
            # wait for them here; the others are resolved on the cluster
            foreign = [
                u
                for u in call.upstream
                if u.outcome is None
                and (u.task_run_id not in self._ours or u.task_run_id in self._waiting_foreign)
            ]
            self._ours.add(trid)
            self._calls[trid] = call
            self._prepared[trid] = (blob, plan)
            if foreign:
                self._waiting_foreign[trid] = len(foreign)
            else:
                self._pending.append(call)
                if len(self._pending) == 1:
                    self._wake.set()
        for u in foreign:
            u.add_done_callback(lambda _f, call=call: self._foreign_done(call))

    def _announce(self, flow_run: Any) -> None:
        """One log line per flow run saying where its tasks run (and the dashboard)."""
        from nb2flow.runtime.events import RunEvent

        self._announced.add(flow_run.id)
        client = self._active_client
        info = client.scheduler_info(n_workers=0)  # totals only: cheap on big clusters
        workers = info.get("n_workers", 0)
        text = f"task runs go to the Dask scheduler at {client.scheduler.address}"
        text += f" ({workers} worker{'s' if workers != 1 else ''} now)"
        if "dashboard" in info.get("services", {}):  # served only with bokeh installed
            text += f"; dashboard: {client.dashboard_link}"
        data = {"level": 20, "levelname": "INFO", "message": text, "logger": "nb2flow.dask"}
        flow_run.publish(RunEvent("log", time.time(), flow_run.id, None, data))

    def _foreign_done(self, call: Any) -> None:
        trid = call.payload.task_run_id
        with self._lock:
            self._waiting_foreign[trid] -= 1
            if self._waiting_foreign[trid]:
                return
            del self._waiting_foreign[trid]
            self._pending.append(call)
            if len(self._pending) == 1:
                self._wake.set()

    @staticmethod
    def _plan(call: Any) -> tuple[TaskPayload, list[tuple[int, Any]]]:
        """Rewrite the payload's Refs for the Dask arguments: one per (upstream, selector),
        where the selector is None (whole value), an item index (a ``nout`` task's item),
        or ``_STATE`` (an upstream only waited for)."""
        payload, ups = call.payload, call.upstream
        if not ups:
            return payload, []
        whole: set[int] = set()
        items: set[tuple[int, int]] = set()

        def collect(obj: Any) -> None:
            t = type(obj)
            if t is Ref:
                if obj.item is None or not ups[obj.slot].nout:
                    whole.add(obj.slot)
                else:
                    items.add((obj.slot, obj.item))
            elif t is dict:
                for v in obj.values():
                    collect(v)
            elif t in _CONTAINERS:
                for v in obj:
                    collect(v)

        if payload.has_refs:
            collect(payload.args)
            collect(payload.kwargs)
        plan: list[tuple[int, Any]] = []
        index: dict[tuple[int, Any], int] = {}
        for slot in range(len(ups)):
            if slot in whole:
                index[(slot, None)] = len(plan)
                plan.append((slot, None))
        for slot, item in sorted(items):
            if slot not in whole:
                index[(slot, item)] = len(plan)
                plan.append((slot, item))
        used = whole | {s for s, _ in items}
        for slot in range(len(ups)):
            if slot not in used:
                plan.append((slot, _STATE))
        if not payload.has_refs:
            return payload, plan

        def remap(obj: Any) -> Any:
            t = type(obj)
            if t is Ref:
                if obj.slot in whole:
                    return Ref(index[(obj.slot, None)], obj.item)
                if obj.item is not None and (obj.slot, obj.item) in index:
                    return Ref(index[(obj.slot, obj.item)], None)
                return Ref(index[(obj.slot, None)], obj.item)
            if t is dict:
                return {k: remap(v) for k, v in obj.items()}
            if t in _CONTAINERS:
                return t(remap(v) for v in obj)
            return obj

        return payload.with_args(remap(payload.args), remap(payload.kwargs)), plan

    def _ship(self, task: Any) -> None:
        """Make the task's module usable on the workers, once per module and run.

        Modules of the Python installation are imported by name there. Others (a script,
        a notebook's ``__main__``, a test module) are pickled by value with each task; a
        script nb2flow generated is also uploaded, so its module level (imports, ``setup``
        cells) runs once on every worker, as it does in the flow process.
        """
        fn = getattr(task, "fn", None)
        glb = getattr(fn, "__globals__", None) or {}
        mod_name = glb.get("__name__") or getattr(fn, "__module__", None)
        if mod_name is None or mod_name in self._shipped:
            return
        self._shipped.add(mod_name)
        if mod_name == "nb2flow" or mod_name.startswith("nb2flow."):
            return
        path = glb.get("__file__")
        if not path or _installed(path):
            return
        module = sys.modules.get(mod_name)
        if mod_name != "__main__" and getattr(module, "__dict__", None) is glb:
            # (__main__, and modules missing from sys.modules, are pickled by value anyway)
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        from nb2flow.codegen import is_generated

        if path.endswith(".py") and is_generated(path):
            self._upload(path)

    def _upload(self, path: str) -> None:
        from distributed.diagnostics.plugin import UploadFile

        client = self._active_client
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        name = f"nb2flow-upload-{stem}-{digest}"
        # the scheduler's id, not its address: a later cluster may get the same port
        key = (client.scheduler_info(n_workers=0).get("id") or client.scheduler.address, name)
        if key in _uploaded:
            return
        try:
            client.register_plugin(UploadFile(path), name=name)
        except Exception as exc:  # noqa: BLE001
            raise Nb2flowError(
                f"cannot load {path} on the Dask workers: {error_line(exc)} "
                "(the workers need the script's imports installed)"
            ) from None
        _uploaded.add(key)

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            if self._closing:
                return
            self._wake.clear()
            # let a .map() or a flow body finish queuing: one batch for all of it
            t0 = time.monotonic()
            n = -1
            while True:
                with self._lock:
                    m = len(self._pending)
                if m == n or m >= BATCH_MAX or time.monotonic() - t0 > BATCH_MAX_WAIT:
                    break
                n = m
                time.sleep(BATCH_WINDOW)
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    self._submit_batch(batch)
                except BaseException as exc:  # noqa: BLE001 - fail the batch, never hang
                    self._fail_batch(batch, exc)

    def _fail_batch(self, batch: list[Any], exc: BaseException) -> None:
        from nb2flow.runtime.engine import format_traceback

        for call in batch:
            self._prepared.pop(call.payload.task_run_id, None)
            if call.future.handle is None and not call.future.done():
                self._calls.pop(call.payload.task_run_id, None)
                call.finish(
                    Outcome(
                        CRASHED,
                        error=f"cannot submit to the Dask cluster: {error_line(exc)}",
                        traceback=format_traceback(exc),
                        attempt=0,
                        ts=time.time(),
                    )
                )

    def _submit_batch(self, batch: list[Any]) -> None:
        """Submit calls in creation order, one ``client.map`` per dependency level."""
        group: list[Any] = []
        in_group: set[str] = set()
        for call in batch:
            if call.future.done():  # cancelled meanwhile
                self._prepared.pop(call.payload.task_run_id, None)
                continue
            if any(u.task_run_id in in_group for u in call.upstream):
                self._submit_group(group)
                group, in_group = [], set()
            group.append(call)
            in_group.add(call.payload.task_run_id)
        if group:
            self._submit_group(group)

    def _submit_group(self, group: list[Any]) -> None:
        client = self._active_client
        # helper tasks first: items of nout tasks, states of runs only waited for
        need: dict[tuple[str, Any], tuple[Any, Any]] = {}
        for call in group:
            for slot, sel in self._prepared[call.payload.task_run_id][1]:
                u = call.upstream[slot]
                key = (u.task_run_id, sel)
                if sel is not None and key not in self._helpers and u.handle is not None:
                    need[key] = (u, sel)
        if need:
            ups = [u for u, _ in need.values()]
            sels = [sel for _, sel in need.values()]
            keys = [
                f"{u.name}.{'state' if sel == _STATE else f'item{sel}'}-{u.task_run_id}"
                for u, sel in need.values()
            ]
            names = [u.name for u in ups]
            futs = client.map(_select, [u.handle for u in ups], sels, names, key=keys, pure=False)
            self._helpers.update(zip(need, futs, strict=True))
            self.stats["helpers"] += len(futs)
            self.stats["graph_updates"] += 1
        blobs, uplists, keys = [], [], []
        for call in group:
            blob, plan = self._prepared.pop(call.payload.task_run_id)
            if len(blob) > SCATTER_LIMIT:
                blob = client.scatter(blob, hash=False)
                self.stats["scattered"] += 1
            blobs.append(blob)
            uplists.append([self._upstream_arg(call.upstream[slot], sel) for slot, sel in plan])
            keys.append(f"{call.task.name}-{call.payload.task_run_id}")
        trids = [c.payload.task_run_id for c in group]
        futs = client.map(
            _run_task,
            trids,
            blobs,
            uplists,
            token=self._token,
            inline_limit=self.inline_limit,
            key=keys,
            pure=False,
        )
        self.stats["graph_updates"] += 1
        self.stats["submitted"] += len(group)
        q = self._queue
        for call, fut in zip(group, futs, strict=True):
            call.future.handle = fut
            self._submitted.append(call)
            fut.add_done_callback(
                lambda f, trid=call.payload.task_run_id: q.put((trid, "dask", f, None))
            )

    def _upstream_arg(self, u: Any, sel: Any) -> Any:
        if u.handle is not None:
            return u.handle if sel is None else self._helpers[(u.task_run_id, sel)]
        # a finished run of another runner: its outcome travels with the task
        o = u.outcome
        if sel == _STATE or not o.ok:
            return _summary(o, keep_exc=False)
        if sel is None:
            return self._active_client.scatter(Outcome(o.state, o.value, attempt=o.attempt))
        return Outcome(o.state, o.value[sel], attempt=o.attempt)

    # -- results -------------------------------------------------------------------------

    def _drain(self) -> None:
        import cloudpickle

        get = self._queue.get
        while True:
            msg = get()
            if msg is None:
                return
            trid, kind, a, b = msg
            call = self._calls.get(trid)
            if call is None or call.future.done():
                continue  # e.g. a recomputation after a worker died: the run is final
            try:
                if kind == "event":
                    call.flow_run.publish(cloudpickle.loads(a))
                elif kind == "done":
                    self._finish(call, cloudpickle.loads(a), b)
                else:
                    self._dask_done(call, a)
            except Exception as exc:  # noqa: BLE001 - a bad message must not hang the run
                if kind != "event":
                    self._calls.pop(trid, None)
                    call.finish(Outcome(CRASHED, error=error_line(exc), attempt=0, ts=time.time()))

    def _finish(self, call: Any, summary: Outcome, inline: bytes | None) -> None:
        self._calls.pop(call.payload.task_run_id, None)
        if summary.ok:
            if inline is not None:
                import cloudpickle

                summary.value = cloudpickle.loads(inline)
            else:
                fut = call.future
                summary = RemoteOutcome(summary, lambda item: self._fetch(fut, item))
        call.finish(summary)

    def _fetch(self, fut: Any, item: int | None) -> Any:
        """The value (``item`` None) or one item of a finished run, from the cluster."""
        import cloudpickle

        from nb2flow.runtime.exceptions import TaskRunError
        from nb2flow.runtime.futures import Unavailable, unavailable_warning

        handle = fut.handle
        if handle is None:
            raise TaskRunError(
                f"the result of task {fut.name!r} stayed on the Dask cluster and was released "
                "when its flow run ended; return it from the flow to keep it"
            )
        what = fut.name if item is None else f"{fut.name}[{item}]"
        key = f"{fut.name}.fetch{'' if item is None else item}-{fut.task_run_id}"
        try:
            blob, why = self._active_client.submit(
                _pack_value, handle, fut.name, fut.nout, item, key=key, pure=False
            ).result()
        except Exception as exc:  # noqa: BLE001 - e.g. the cluster went away
            blob, why = None, error_line(exc)
        if blob is None:
            raise TaskRunError(
                f"the result of task {what!r} cannot be sent from the Dask worker to the "
                f"flow process: {why}"
            )
        self.stats["fetched"] += 1
        value = cloudpickle.loads(blob)
        flow_run = fut.call.flow_run if fut.call is not None else None
        if flow_run is not None and fut.nout:
            for m in [value] if item is not None else value:
                if type(m) is Unavailable:
                    flow_run.publish(unavailable_warning(m, flow_run.id, fut.task_run_id))
        return value

    def _dask_done(self, call: Any, fut: Any) -> None:
        """The Dask future is final but the run's final message did not come first."""
        status = fut.status
        now = time.time()
        if status == "finished":
            # the message went missing (it is sent before the task ends): ask the cluster
            self.stats["fallbacks"] += 1
            blob, inline = self._active_client.submit(
                _fallback_summary, fut, self.inline_limit, pure=False
            ).result()
            import cloudpickle

            self._finish(call, cloudpickle.loads(blob), inline)
            return
        self._calls.pop(call.payload.task_run_id, None)
        if status == "error":
            for u in call.upstream:
                h = u.handle
                if h is not None and h.status == "error":
                    call.finish(
                        Outcome(
                            NOT_RUN,
                            attempt=0,
                            ts=now,
                            message=f"upstream task {u.name!r} is {CRASHED}",
                        )
                    )
                    return
            exc = fut.exception()
            error = error_line(exc)
            if type(exc).__name__ == "KilledWorker":
                error = f"the Dask workers running it died: {error}"
            call.finish(Outcome(CRASHED, error=error, traceback="", ts=now))
            return
        call.finish(
            Outcome(
                CRASHED,
                error=f"the Dask cluster dropped it (future {status}: scheduler lost or restarted)",
                traceback="",
                ts=now,
            )
        )
