"""Which notebook cells draw from a global random state the notebook never seeds.

NumPy's global ``RandomState`` (what ``np.random.rand`` and every scikit-learn estimator
left at ``random_state=None`` draw from) and the ``random`` module start from fresh entropy
in every kernel. A value set in a cell that draws from them is nondeterministic even when
the notebook's two runs happen to agree on it (clusters found with the same labels twice,
a model whose predictions on the sample rows agree by chance), so a difference from the flow
proves nothing about the conversion.

:func:`watch` runs inside the notebook's kernel (its text is executed there, like
:mod:`nb2flow.check.dump`: standard library only). Around every cell it records a digest of
both global states and which of the checked names the cell (re)bound, one JSON line per
cell. :func:`unseeded_draws` reads the records of the notebook's two runs: a cell draws from
an unseeded state when it changed the state (that it existed before the cell: importing
numpy draws already) and the state it left differs between the two runs (a cell that seeds
before drawing leaves the same state both times).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

RECORD = "randomness.jsonl"
#: the global states watched, and how a report names them
STATES = {"numpy": "NumPy's global random state", "random": "the random module's state"}


def _numpy_state() -> str | None:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    try:
        _, keys, pos, *_ = numpy.random.get_state()
    except Exception:  # noqa: BLE001 - a numpy without the legacy global state
        return None
    return hashlib.sha1(keys.tobytes() + str(pos).encode()).hexdigest()


def _random_state() -> str | None:
    module = sys.modules.get("random")
    if module is None:
        return None
    _, words, _ = module.getstate()
    return hashlib.sha1(repr(words).encode()).hexdigest()


def _states() -> dict[str, str | None]:
    return {"numpy": _numpy_state(), "random": _random_state()}


def watch(shell: Any, names: list[str], out: str) -> None:
    """Record, for every cell the kernel runs from now on, the global random states before
    and after it and the names among `names` it bound (to ``out/randomness.jsonl``)."""
    user = shell.user_ns
    seen: dict[str, Any] = {}

    def ids() -> dict[str, int]:
        return {n: id(user[n]) for n in names if n in user}

    def before(*_: Any) -> None:
        seen["states"], seen["ids"] = _states(), ids()

    def after(*_: Any) -> None:
        if "states" not in seen:  # the cell that registered this
            return
        now = ids()
        bound = [n for n, i in now.items() if seen["ids"].get(n) != i]
        line = {"before": seen.pop("states"), "after": _states(), "bound": bound}
        with open(os.path.join(out, RECORD), "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    shell.events.register("pre_run_cell", before)
    shell.events.register("post_run_cell", after)


# --- in the checker ------------------------------------------------------------------------


def load(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records :func:`watch` wrote, one per cell run after it, in order."""
    path = os.path.join(out, RECORD)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _drew(record: dict[str, Any], state: str) -> bool:
    """Whether the cell moved the state on. A cell that first imports numpy is not taken as
    drawing: importing it moves the fresh state on already, so its own draws cannot be told
    apart (a value it sets that differs stays a failure)."""
    old, new = record["before"][state], record["after"][state]
    return old is not None and new is not None and old != new


def unseeded_draws(
    first: list[dict[str, Any]], second: list[dict[str, Any]], numbers: list[int]
) -> dict[str, tuple[int, str]]:
    """name -> (cell number, state) for each name whose last binding cell (in the first run)
    drew from a global random state that the notebook's two runs left differently.
    ``numbers[i]`` is the notebook's number of the i-th recorded cell (0: a cell the check
    added)."""
    found: dict[str, tuple[int, str]] = {}
    for i, (one, two) in enumerate(zip(first, second, strict=False)):
        number = numbers[i] if i < len(numbers) else 0
        if not number:
            continue
        drawn = [s for s in STATES if _drew(one, s) and one["after"][s] != two["after"][s]]
        for name in one["bound"]:
            if drawn:
                found[name] = (number, drawn[0])
            else:
                found.pop(name, None)  # bound again later, without unseeded draws
    return found
