"""Task runners by name, papermill-style: :func:`register` a class, a factory or a
``"module:attr"`` imported on first use; :func:`create` turns a spec (a name, ``"name:option"``,
a class or an instance) into the runner of one flow run."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nb2flow import settings
from nb2flow.errors import Nb2flowError
from nb2flow.runtime.runners.base import TaskRunner
from nb2flow.runtime.runners.local import SequentialRunner, ThreadRunner

DEFAULT = "threads"

Factory = Callable[[str | None], TaskRunner]

_REGISTRY: dict[str, Factory | str] = {
    "sequential": SequentialRunner,
    "threads": ThreadRunner,
    "processes": "nb2flow.runtime.runners.processes:ProcessRunner",
    # needs the optional ``distributed`` package: imported on first use
    "dask": "nb2flow.runtime.runners.dask.runner:DaskRunner",
}
_ALIASES = {"thread": "threads", "process": "processes", "sync": "sequential", "tcp": "dask"}


def register(name: str, factory: Factory | str) -> None:
    """Register a runner under ``name``: a class or factory taking the option string, or
    ``"module:attr"`` to import on first use."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def _lookup(name: str) -> Factory:
    factory = _REGISTRY.get(_ALIASES.get(name, name))
    if factory is None:
        raise Nb2flowError(
            f"unknown task runner {name!r}; choose one of: {', '.join(names())} "
            "(optionally with a width, e.g. threads:8)"
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            imported: Factory = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise Nb2flowError(f"task runner {name!r} is not available: {exc}") from None
        return imported
    return factory


def parse(spec: str) -> tuple[str, str | None]:
    """``"threads:8"`` -> ("threads", "8"); ``"dask://h:1"`` -> ("dask", "h:1");
    ``"tcp://h:1"`` -> ("dask", "tcp://h:1")."""
    spec = spec.strip()
    name, sep, option = spec.partition(":")
    name = name.strip().lower()
    if not sep:
        return name, None
    if name == "tcp":
        return "dask", spec
    if option.startswith("//"):
        option = option[2:]
    return name, option or None


def create(spec: Any = None) -> TaskRunner:
    """A runner for one flow run, from a spec: None (``$NB2FLOW_TASK_RUNNER``, else
    threads), a name with an optional option, a TaskRunner class, or an instance (used as
    it is: started and shut down by each run, so not for flows running at the same time)."""
    if spec is None:
        spec = settings.task_runner() or DEFAULT
    if isinstance(spec, TaskRunner):
        return spec
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return spec()
    if not isinstance(spec, str):
        raise Nb2flowError(f"task_runner must be a name such as 'threads:8', not {spec!r}")
    name, option = parse(spec)
    return _lookup(name)(option)
