"""The codec of ``task_runs.history``: a task run's state transitions in one text column.

Each transition is ``;TS,STATE,ATTEMPT[,SEQ]``, appended to the column as it happens:

- ``TS`` is the time as 16 hex digits, its IEEE double little-endian (exact, and much
  faster to write than ``repr`` on the recorder's path);
- ``STATE`` a state name (one that is not a known state has its ``;`` and ``,`` blanked,
  so the column always parses);
- ``ATTEMPT`` the attempt, empty when unknown;
- ``SEQ``, present when the transition has details (a message, an error, a traceback, a
  cache source), the ``seq`` of its row in ``states``.

The recorder writes it, the crash sweep appends to it, and rebuilding a run reads it: all
through :func:`encode` and :func:`decode`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from nb2flow.runtime.core.states import ALL_STATES


class Transition(NamedTuple):
    ts: float
    state: str
    attempt: int | None
    #: set when the transition has a row in ``states`` (message, error, traceback...)
    seq: int | None = None


_DOUBLE = struct.Struct("<d")
_pack = _DOUBLE.pack
_unpack = _DOUBLE.unpack
_STATES = frozenset(ALL_STATES)


def clean_state(state: object) -> str:
    """``state`` as it can be stored: a known state as it is, anything else without the
    separators of the format."""
    text = str(state)
    if text in _STATES:
        return text
    return text.replace(";", " ").replace(",", " ")


def encode(ts: float, state: str, attempt: int | None, seq: int | None = None) -> str:
    """One transition (``state`` as :func:`clean_state` left it)."""
    text = f";{_pack(ts).hex()},{state},{'' if attempt is None else attempt}"
    return text if seq is None else f"{text},{seq}"


def decode(history: str | None) -> list[Transition]:
    """Every transition of a ``history`` column, in order."""
    out = []
    for entry in (history or "").split(";")[1:]:
        ts, state, attempt, *seq = entry.split(",")
        out.append(
            Transition(
                _unpack(bytes.fromhex(ts))[0],
                state,
                int(attempt) if attempt else None,
                int(seq[0]) if seq else None,
            )
        )
    return out
