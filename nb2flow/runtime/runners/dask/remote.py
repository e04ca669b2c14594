"""Outcomes whose value stayed on the Dask cluster: fetched when the flow process asks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nb2flow.runtime.engine.futures import Outcome
from nb2flow.runtime.runners.dask.worker import about

_VALUE = Outcome.__dict__["value"]  # the slot under the property below


class RemoteOutcome(Outcome):
    """An outcome whose value is still on the cluster: fetched on first access, whole
    (``value``) or one item of a ``nout`` task at a time (:meth:`item`)."""

    __slots__ = ("_fetch", "_items", "_fetch_lock")

    def __init__(self, summary: Outcome, fetch: Callable[[int | None], Any]) -> None:
        super().__init__(summary.state, None, **about(summary))
        #: ``fetch(None)`` gets the value, ``fetch(i)`` its item i; None once fetched
        self._fetch: Callable[[int | None], Any] | None = fetch
        self._items: dict[int, Any] = {}
        self._fetch_lock = threading.Lock()

    @property
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
