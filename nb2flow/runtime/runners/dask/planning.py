"""Argument planning: which Dask arguments a task run needs from each upstream run.

An upstream run is handed over whole (its whole value is read), as one item of a ``nout``
task (only that item is read: a small helper task picks it on the cluster, so the other
items never move), or as its state alone (it is only waited for). The payload's ``Ref``
placeholders are renumbered to index that list of arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nb2flow.runtime.engine.futures import TaskFuture
from nb2flow.runtime.engine.payload import CONTAINERS, Ref, TaskPayload
from nb2flow.runtime.runners.dask.worker import STATE

#: one Dask argument per entry: (upstream slot, selector), the selector being None (the
#: whole value), an item index, or :data:`~.worker.STATE`
Plan = list[tuple[int, Any]]


def _read_slots(
    payload: TaskPayload, ups: Sequence[TaskFuture]
) -> tuple[set[int], set[tuple[int, int]]]:
    """The upstream slots whose whole value the arguments read, and the (slot, item) pairs
    of ``nout`` tasks read item by item."""
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
        elif t in CONTAINERS:
            for v in obj:
                collect(v)

    if payload.has_refs:
        collect(payload.args)
        collect(payload.kwargs)
    return whole, items


def plan_arguments(payload: TaskPayload, ups: Sequence[TaskFuture]) -> tuple[TaskPayload, Plan]:
    """The payload with its Refs renumbered for the Dask arguments, and the plan of those
    arguments: whole values first (in slot order), then items, then states."""
    if not ups:
        return payload, []
    whole, items = _read_slots(payload, ups)
    plan: Plan = []
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
            plan.append((slot, STATE))
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
        if t in CONTAINERS:
            return t(remap(v) for v in obj)
        return obj

    return payload.with_args(remap(payload.args), remap(payload.kwargs)), plan


def helper_key(upstream: TaskFuture, selector: Any) -> str:
    """The Dask key of the helper task picking ``selector`` of ``upstream``."""
    what = "state" if selector == STATE else f"item{selector}"
    return f"{upstream.name}.{what}-{upstream.task_run_id}"
