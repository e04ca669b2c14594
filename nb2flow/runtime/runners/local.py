"""The runners of the flow process: sequential (in the flow's thread) and threads."""

from __future__ import annotations

import os
import queue
import threading

from nb2flow.runtime.engine.flow_run import TaskCall
from nb2flow.runtime.runners.base import TaskRunner, finish_failed, parse_width


class SequentialRunner(TaskRunner):
    """Runs each submitted task at once, in the flow's thread (debugging, tiny flows)."""

    name = "sequential"

    def submit(self, call: TaskCall) -> None:
        call.run()


class ThreadRunner(TaskRunner):
    """A pool of daemon worker threads, started as work arrives (up to ``width``).

    Tasks blocked in I/O, numpy, pandas, xgboost... release the GIL and overlap. Workers
    are daemon threads, so a run cancelled with Ctrl-C exits at once even when a task
    cannot be interrupted.
    """

    name = "threads"

    def __init__(self, option: str | None = None) -> None:
        super().__init__(option)
        self.width = parse_width(option, self.name, min(32, (os.cpu_count() or 1) + 4))
        self._queue: queue.SimpleQueue[TaskCall | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0

    def describe(self) -> str:
        return f"threads:{self.width}"

    def start(self) -> None:
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._idle = 0

    def submit(self, call: TaskCall) -> None:
        with self._lock:
            # a worker that is idle takes it; otherwise start one while below the width
            if self._idle:
                self._idle -= 1
                spawn = False
            else:
                spawn = len(self._threads) < self.width
                if spawn:
                    th = threading.Thread(
                        target=self._work, name=f"nb2flow-worker-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(th)
        self._queue.put(call)
        if spawn:
            th.start()

    def _work(self) -> None:
        get, lock = self._queue.get, self._lock
        while True:
            call = get()
            if call is None:
                return
            try:
                call.run()
            except BaseException as exc:  # noqa: BLE001 - a worker must never die with a call
                finish_failed(call, exc)
            # an idle worker must not keep the last call (and what it read) alive
            call = None
            with lock:
                self._idle += 1

    def shutdown(self, cancel: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []
