"""The Dask task runner: task runs become futures on a ``distributed`` cluster.

Choose it with ``@flow(task_runner="dask")`` (a LocalCluster sized to the machine, or the
default ``distributed.Client`` if one exists in the process), ``"dask:4"`` (a LocalCluster
of 4 worker processes), ``"dask://host:8786"`` / ``"tcp://host:8786"`` (an existing
scheduler), ``--executor ...`` on a flow script's command line, ``NB2FLOW_TASK_RUNNER``, or a
:class:`DaskRunner` object (``DaskRunner(address=...)``, ``DaskRunner(cluster=...)``,
``DaskRunner(client=...)``).

How it works (see ``docs/dask.md``):

* Every task run is one Dask task, :func:`.worker.run_task`, which calls
  :func:`nb2flow.runtime.engine.attempts.execute` on the worker (cache, retries, timeouts, NotRun).
  Its Dask result is the run's whole :class:`~nb2flow.runtime.engine.futures.Outcome`, value
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

import functools
import logging
import queue
import threading
import uuid
import weakref
from typing import Any, cast

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.core import events
from nb2flow.runtime.core.exceptions import TaskRunError
from nb2flow.runtime.core.states import CRASHED
from nb2flow.runtime.core.tracebacks import error_line, format_traceback
from nb2flow.runtime.engine.flow_run import FlowRun, TaskCall
from nb2flow.runtime.engine.futures import Outcome, TaskFuture
from nb2flow.runtime.runners.base import TaskRunner
from nb2flow.runtime.runners.dask import worker
from nb2flow.runtime.runners.dask.batching import Batcher, dependency_levels
from nb2flow.runtime.runners.dask.connection import (
    Connection,
    import_distributed,
    route_events,
    unroute_events,
)
from nb2flow.runtime.runners.dask.planning import Plan, helper_key, plan_arguments
from nb2flow.runtime.runners.dask.remote import RemoteOutcome
from nb2flow.runtime.runners.dask.shipping import Shipper

#: Payloads above this size are scattered to a worker instead of going through the
#: scheduler inside the task graph.
SCATTER_LIMIT = 1 << 20


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
        inline_limit: int = worker.INLINE_LIMIT,
    ) -> None:
        super().__init__(option)
        import_distributed()
        n_workers: int | None = None
        if option is not None and option.strip().isdigit():
            n_workers = int(option)
            if n_workers < 1:
                raise Nb2flowError(f"task runner dask:{option}: needs at least 1 worker")
        elif option:
            address = address or option
        self.connection = Connection(
            address=address,
            cluster=cluster,
            client=client,
            n_workers=n_workers,
            cluster_kwargs=cluster_kwargs,
            connect_timeout=connect_timeout,
        )
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
        """Fresh state for the flow runs between a start and the matching shutdown."""
        self._token = ""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._calls: dict[str, TaskCall] = {}
        #: the upstream calls of each submitted run (its own futures are let go once on
        #: the cluster, so Dask frees a value as soon as no task and no user needs it)
        self._upstream_calls: dict[str, list[TaskCall]] = {}
        self._ours: set[str] = set()
        self._submitted: list[TaskCall] = []
        self._helpers: dict[tuple[str, Any], Any] = {}
        self._shipper = Shipper(self.connection)
        self._announced: set[str] = set()
        self._prepared: dict[str, tuple[Any, Plan]] = {}
        self._waiting_foreign: dict[str, int] = {}
        self._batcher = Batcher(self._submit_batch, self._fail_batch)
        self._threads: list[threading.Thread] = []

    def describe(self) -> str:
        return self.connection.describe()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._starts += 1
            if self._starts > 1:
                return
            self._reset()
        try:
            client = self.connection.open()
        except BaseException:
            with self._lock:  # not started: the flow run will not call shutdown
                self._starts -= 1
            raise
        self._token = uuid.uuid4().hex
        route_events(client, self._token, self._queue)
        th = threading.Thread(target=self._drain, name="nb2flow-dask-drain", daemon=True)
        th.start()
        self._threads = [th, self._batcher.start()]

    def shutdown(self, cancel: bool = False) -> None:
        with self._lock:
            self._starts -= 1
            if self._starts > 0:
                return
            self._starts = 0
        client = self.connection.active
        for call in self._batcher.close():
            call.finish(Outcome.cancelled("flow run ended"))
        if client is not None:
            if cancel:
                handles = [f.handle for c in self._submitted if (f := c.future) and f.handle]
                try:
                    client.cancel(handles)
                except Exception:  # noqa: BLE001 - the cluster may be gone already
                    pass
            unroute_events(client, self._token)
        # release what the run kept on the cluster (values not fetched by now are gone);
        # the futures nobody holds any more released theirs already
        for call in self._submitted:
            fut = call.future
            if fut is not None:
                fut.handle = None
        self._helpers.clear()
        self._queue.put(None)
        for th in self._threads:  # daemon threads: a lost scheduler must not block the exit
            if th is not threading.current_thread():
                th.join(2 if cancel else 10)
        self.connection.close()

    # -- submission ----------------------------------------------------------------------

    def submit(self, call: TaskCall) -> None:
        if call.flow_run.id not in self._announced:
            self._announce(call.flow_run)
        payload, plan = plan_arguments(call.payload, call.upstream)
        self._shipper.ship(call.task)
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
                self._batcher.add(call)
        for u in foreign:
            u.add_done_callback(functools.partial(self._foreign_done, call))

    def _announce(self, flow_run: FlowRun) -> None:
        """One log line per flow run saying where its tasks run (and the dashboard)."""
        self._announced.add(flow_run.id)
        client = self.connection.active
        info = client.scheduler_info(n_workers=0)  # totals only: cheap on big clusters
        workers = info.get("n_workers", 0)
        text = f"task runs go to the Dask scheduler at {client.scheduler.address}"
        text += f" ({workers} worker{'s' if workers != 1 else ''} now)"
        if "dashboard" in info.get("services", {}):  # served only with bokeh installed
            text += f"; dashboard: {client.dashboard_link}"
        flow_run.publish(events.log(flow_run.id, None, logging.INFO, text, "nb2flow.dask"))

    def _foreign_done(self, call: TaskCall, _upstream: TaskFuture | None = None) -> None:
        trid = call.payload.task_run_id
        with self._lock:
            self._waiting_foreign[trid] -= 1
            if self._waiting_foreign[trid]:
                return
            del self._waiting_foreign[trid]
            self._batcher.add(call)

    def _fail_batch(self, batch: list[TaskCall], exc: BaseException) -> None:
        for call in batch:
            self._prepared.pop(call.payload.task_run_id, None)
            if not call.done and call.future.handle is None:  # type: ignore[union-attr]
                self._calls.pop(call.payload.task_run_id, None)
                call.finish(
                    Outcome.crashed(
                        f"cannot submit to the Dask cluster: {error_line(exc)}",
                        traceback=format_traceback(exc),
                        attempt=0,
                    )
                )

    def _submit_batch(self, batch: list[TaskCall]) -> None:
        """Submit calls in creation order, one ``client.map`` per dependency level."""
        live = []
        for call in batch:
            if call.done:  # cancelled meanwhile
                self._prepared.pop(call.payload.task_run_id, None)
            else:
                live.append(call)
        for group in dependency_levels(live):
            self._submit_group(group)

    def _submit_helpers(self, group: list[TaskCall]) -> None:
        """The helper tasks the group needs: items of nout tasks, states of runs only
        waited for (each once per run)."""
        need: dict[tuple[str, Any], tuple[TaskFuture, Any]] = {}
        for call in group:
            for slot, sel in self._prepared[call.payload.task_run_id][1]:
                u = call.upstream[slot]
                key = (u.task_run_id, sel)
                if sel is not None and key not in self._helpers and u.handle is not None:
                    need[key] = (u, sel)
        if not need:
            return
        ups = [u for u, _ in need.values()]
        sels = [sel for _, sel in need.values()]
        keys = [helper_key(u, sel) for u, sel in need.values()]
        futs = self.connection.active.map(
            worker.select, [u.handle for u in ups], sels, key=keys, pure=False
        )
        self._helpers.update(zip(need, futs, strict=True))
        # a helper lives as long as the run it picks from: when nobody holds that run's
        # future any more, its item key goes too (Dask frees what nobody waits for)
        helpers = self._helpers
        for key, u in zip(need, ups, strict=True):
            weakref.finalize(u, helpers.pop, key, None)
        self.stats["helpers"] += len(futs)
        self.stats["graph_updates"] += 1

    def _submit_group(self, group: list[TaskCall]) -> None:
        client = self.connection.active
        self._submit_helpers(group)
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
            worker.run_task,
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
            own = call.future
            if own is not None:
                own.handle = fut
            # the scheduler now keeps the upstream keys until this task ends: the flow
            # process need not (the user's futures still keep what the user may read)
            self._upstream_calls[call.payload.task_run_id] = [
                cast(TaskCall, u.call) for u in call.upstream if u.call is not None
            ]
            call.release_upstream()
            self._submitted.append(call)
            fut.add_done_callback(
                lambda f, trid=call.payload.task_run_id: q.put((trid, "dask", f, None))
            )

    def _upstream_arg(self, u: TaskFuture, sel: Any) -> Any:
        if u.handle is not None:
            return u.handle if sel is None else self._helpers[(u.task_run_id, sel)]
        # a finished run of another runner: its outcome travels with the task
        o = u.outcome
        assert o is not None  # foreign upstream runs are waited for before submission
        if sel == worker.STATE or not o.ok:
            return worker.summary(o, keep_exc=False)
        if sel is None:
            return self.connection.active.scatter(Outcome(o.state, o.value, attempt=o.attempt))
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
            if call is None or call.done:
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
                    call.finish(Outcome.crashed(error_line(exc), attempt=0))

    def _finish(self, call: TaskCall, summary: Outcome, inline: bytes | None) -> None:
        self._calls.pop(call.payload.task_run_id, None)
        self._upstream_calls.pop(call.payload.task_run_id, None)
        if summary.ok:
            if inline is not None:
                import cloudpickle

                summary.value = cloudpickle.loads(inline)
            else:
                # weakly: the future holds its outcome, and a cycle would outlive its users
                own = call.future
                assert own is not None  # not final yet: the call holds it
                ref = weakref.ref(own)
                summary = RemoteOutcome(summary, lambda item: self._fetch(ref(), item))
        call.finish(summary)

    def _fetch(self, fut: TaskFuture | None, item: int | None) -> Any:
        """The value (``item`` None) or one item of a finished run, from the cluster."""
        import cloudpickle

        assert fut is not None  # only its own future's outcome fetches
        handle = fut.handle
        if handle is None:
            raise TaskRunError(
                f"the result of task {fut.name!r} stayed on the Dask cluster and was released "
                "when its flow run ended; return it from the flow to keep it"
            )
        what = fut.name if item is None else f"{fut.name}[{item}]"
        key = f"{fut.name}.fetch{'' if item is None else item}-{fut.task_run_id}"
        try:
            blob, why = self.connection.active.submit(
                worker.pack_value, handle, fut.name, fut.nout, item, key=key, pure=False
            ).result()
        except Exception as exc:  # noqa: BLE001 - e.g. the cluster went away
            blob, why = None, error_line(exc)
        if blob is None:
            raise TaskRunError(
                f"the result of task {what!r} cannot be sent from the Dask worker to the "
                f"flow process: {why}"
            )
        self.stats["fetched"] += 1
        return cloudpickle.loads(blob)

    def _dask_done(self, call: TaskCall, fut: Any) -> None:
        """The Dask future is final but the run's final message did not come first."""
        status = fut.status
        if status == "finished":
            # the message went missing (it is sent before the task ends): ask the cluster
            self.stats["fallbacks"] += 1
            blob, inline = self.connection.active.submit(
                worker.fallback_summary, fut, self.inline_limit, pure=False
            ).result()
            import cloudpickle

            self._finish(call, cloudpickle.loads(blob), inline)
            return
        self._calls.pop(call.payload.task_run_id, None)
        upstream = self._upstream_calls.pop(call.payload.task_run_id, ())
        if status == "error":
            for up in upstream:
                u = up.future
                h = u.handle if u is not None else None
                final = up.final
                if (h is not None and h.status == "error") or (
                    final is not None and final.state == CRASHED
                ):
                    call.finish(Outcome.not_run(f"upstream task {up.task.name!r} is {CRASHED}"))
                    return
            exc = fut.exception()
            error = error_line(exc)
            if type(exc).__name__ == "KilledWorker":
                error = f"the Dask workers running it died: {error}"
            call.finish(Outcome.crashed(error))
            return
        call.finish(
            Outcome.crashed(
                f"the Dask cluster dropped it (future {status}: scheduler lost or restarted)"
            )
        )
