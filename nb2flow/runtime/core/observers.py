"""What an observer of a top-level flow run is given when the run starts, and what it gives
back (the registry that calls observers is :mod:`nb2flow.runtime.observation.hooks`).

An observer is a callable ``observer(run: RunStart) -> Attachment | None``, called before
the run's first event; it subscribes to run events itself if it wants them. None means it
stays out of this run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RunStart:
    """The top-level flow run that is starting."""

    id: str
    name: str
    flow_name: str
    #: False for ``@flow(persist=False)`` (and ``--no-store``): the run is not to be recorded
    persist: bool


@dataclass(frozen=True)
class Attachment:
    """An observer attached to a run: what it does for the run, and what to call when the
    run has ended (after its last event)."""

    #: the observer shows the run's log lines itself (no stderr echo is needed)
    shows_logs: bool = False
    #: the observer records the run in the run store (``nb2flow show`` will find it)
    records: bool = False
    close: Callable[[], None] | None = None


Observer = Callable[[RunStart], "Attachment | None"]
