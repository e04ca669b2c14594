"""``UNSET``: the value a task returns for a name its code left unbound.

A notebook cell may bind a name on some paths only (one branch of an ``if``, ``del x``, an
``except E as x`` target). A task cannot return "nothing" for one of its outputs, so it
returns ``UNSET``; a task whose input may be ``UNSET`` starts with ``if x is UNSET: del x``,
so that reading ``x`` raises ``UnboundLocalError`` (a ``NameError``), as in the notebook.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UNSET"]


class _Unset:
    """The type of :data:`UNSET` (one instance, also after pickling)."""

    __slots__ = ()
    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        # a global of this module: unpickling (other process, Dask worker) gives the singleton
        return "UNSET"

    def __copy__(self) -> _Unset:
        return self

    def __deepcopy__(self, memo: Any) -> _Unset:
        return self


#: The value of a name the notebook would leave unbound.
UNSET = _Unset()
