"""The task runner contract: where submitted task runs execute.

The interface (all a new runner implements; subclass :class:`TaskRunner`):

``__init__(self, option: str | None = None)``
    ``option`` is what follows the name in a spec: ``"threads:8"`` gives ``"8"``,
    ``"dask://host:8786"`` gives ``"host:8786"``.
``start()``
    Called once per flow run, before the first submission (open pools here).
``submit(call)``
    Run ``call`` (an :class:`nb2flow.runtime.engine.flow_run.TaskCall`) and eventually report its
    :class:`~nb2flow.runtime.engine.futures.Outcome` with ``call.finish(outcome)``, from any
    thread. Do not block the caller. What a call offers:

    - ``call.payload``: the picklable :class:`~nb2flow.runtime.engine.payload.TaskPayload`
      (``payload.with_args(args, kwargs)`` copies it with other arguments, e.g. Refs
      renumbered, keeping every other field);
    - ``call.upstream``: the distinct upstream :class:`~nb2flow.runtime.engine.futures.TaskFuture`
      objects (data and ``wait_for``), in the order the payload's placeholders index;
      ``fut.handle`` is free for the runner (e.g. its own future for that run),
      ``fut.outcome`` is the outcome once final (None before);
    - ``call.upstream_outcomes()``: their outcomes, once they are all final;
    - ``call.run()``: execute here and finish (what local runners do);
    - ``call.future``: the run's own future (set ``call.future.handle`` here); after
      ``call.finish`` it is None once nobody holds it (``call.done`` tells it is final);
    - ``call.release_upstream()``: drop the upstream futures once their values are sent
      elsewhere (pickled for a worker, handed to a scheduler), so they are freed as soon
      as no one else needs them. Keep no future, outcome or value past ``call.finish``:
      the engine frees a result when the last reader ends (docs/runtime.md, "Memory").

    Executing elsewhere: call ``nb2flow.runtime.engine.attempts.execute(payload, outcomes, sink)``
    on the executing side. It runs the attempts there (cache, retries, timeouts, NotRun if
    an upstream outcome is not Completed/Cached) and returns an ``Outcome`` that must be
    sent back (it is picklable; :func:`~nb2flow.runtime.engine.transport.pack_outcome` degrades what
    cannot be pickled).
    Pass ``sink=None`` to buffer the attempt's events (Running, Retrying, logs) in
    ``outcome.events``; ``call.finish`` publishes them in the flow process in order, then
    the final state. Or stream them live with a sink that forwards each ``RunEvent`` to
    the flow process, where ``call.flow_run.publish(event)`` emits it; in that case every
    streamed event must be published before ``call.finish``.
``shutdown(cancel=False)``
    Called once when the flow run ends (``cancel=True`` on Ctrl-C or a flow timeout:
    drop queued work, do not wait).
``resolves_upstream`` (class attribute, default False)
    False: the engine submits a call only when its upstream runs are final (and marks it
    NotRun itself when one failed). True: the engine submits every call at once, and the
    runner passes the upstream results to the executing side itself (a Dask runner hands
    ``[u.handle for u in call.upstream]`` to ``client.submit`` so results never travel
    through the flow process); ``execute`` then decides NotRun from the outcomes.
``describe()``
    Text recorded as the run's ``task_runner`` (``"threads:8"``).

Register a runner with :func:`nb2flow.runtime.runners.registry.register` (a class, a factory,
or ``"module:attr"`` imported on first use); ``registry.create`` turns a spec (name,
``"name:option"``, instance) into a runner.
"""

from __future__ import annotations

import abc

from nb2flow.errors import Nb2flowError
from nb2flow.runtime.engine.flow_run import TaskCall
from nb2flow.runtime.engine.futures import Outcome


class TaskRunner(abc.ABC):
    """Base class of task runners; see the module docstring for the contract."""

    name = "base"
    resolves_upstream = False

    def __init__(self, option: str | None = None) -> None:
        self.option = option

    def start(self) -> None:  # noqa: B027 - optional hook: most runners need no set-up
        """Called once per flow run, before the first submission."""

    @abc.abstractmethod
    def submit(self, call: TaskCall) -> None:
        """Run ``call`` somewhere and report its outcome with ``call.finish`` (never block)."""

    def shutdown(self, cancel: bool = False) -> None:  # noqa: B027 - optional hook
        """Called once when the flow run ends (``cancel``: drop queued work, do not wait)."""

    def describe(self) -> str:
        return self.name if self.option is None else f"{self.name}:{self.option}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def parse_width(option: str | None, name: str, default: int) -> int:
    if option is None or option == "":
        return default
    try:
        width = int(option)
    except ValueError:
        raise Nb2flowError(f"task runner {name}:{option}: the width must be an integer") from None
    if width < 1:
        raise Nb2flowError(f"task runner {name}:{option}: the width must be at least 1")
    return width


def finish_failed(call: TaskCall, exc: BaseException) -> None:
    """Finish ``call`` Failed with ``exc`` (what a runner does when running it raised)."""
    call.finish(Outcome.failed(exc))
