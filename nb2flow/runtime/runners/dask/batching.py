"""Batching: calls that arrive within a millisecond of each other (a ``.map()``, a flow body
submitting its graph) reach the scheduler together, one ``client.map`` per dependency level."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from nb2flow.runtime.engine.flow_run import TaskCall

#: How long submissions are gathered into one batch (seconds), and the batch cap.
BATCH_WINDOW = 0.001
BATCH_MAX_WAIT = 0.05
BATCH_MAX = 5000


class Batcher:
    """Collects calls ready for the cluster and hands them to ``submit`` in batches, from its
    own thread; a batch ``submit`` raises for goes to ``fail``."""

    def __init__(
        self,
        submit: Callable[[list[TaskCall]], None],
        fail: Callable[[list[TaskCall], BaseException], None],
    ) -> None:
        self._submit = submit
        self._fail = fail
        self._lock = threading.Lock()
        self._pending: list[TaskCall] = []
        self._wake = threading.Event()
        self._closing = False

    def add(self, call: TaskCall) -> None:
        with self._lock:
            self._pending.append(call)
            if len(self._pending) == 1:
                self._wake.set()

    def start(self) -> threading.Thread:
        th = threading.Thread(target=self._loop, name="nb2flow-dask-submit", daemon=True)
        th.start()
        return th

    def close(self) -> list[TaskCall]:
        """Stop the thread; return the calls it had not handed over."""
        self._closing = True
        self._wake.set()
        with self._lock:
            left, self._pending = self._pending, []
        return left

    def _gather(self) -> list[TaskCall]:
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
        return batch

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self._closing:
                return
            self._wake.clear()
            batch = self._gather()
            if batch:
                try:
                    self._submit(batch)
                except BaseException as exc:  # noqa: BLE001 - fail the batch, never hang
                    self._fail(batch, exc)


def dependency_levels(batch: list[TaskCall]) -> Iterator[list[TaskCall]]:
    """The calls in creation order, cut where a call depends on one of the group so far
    (each group can go to the scheduler in one ``client.map``)."""
    group: list[TaskCall] = []
    in_group: set[str] = set()
    for call in batch:
        if any(u.task_run_id in in_group for u in call.upstream):
            yield group
            group, in_group = [], set()
        group.append(call)
        in_group.add(call.payload.task_run_id)
    if group:
        yield group
