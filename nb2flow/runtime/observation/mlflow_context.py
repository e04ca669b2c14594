"""mlflow runs started inside an nb2flow run are tagged with that run, by mlflow itself.

mlflow asks every registered run context provider for tags when ``mlflow.start_run()``
creates a run (the way it tags runs with the git commit or the notebook). nb2flow's provider
is registered two ways: as the ``mlflow.run_context_provider`` entry point of the installed
package (mlflow loads it when it is imported, in any process), and, where the package
metadata does not have the entry point (a source checkout on ``PYTHONPATH``, a Dask worker
that only has the code), by the runtime when a task run starts in a process where mlflow is
imported (:func:`ensure_registered`). A provider instead of a patched ``start_run``: it is
mlflow's documented extension point, it also covers ``MlflowClient``-less fluent runs
started by libraries (autologging), and tags the user passes win over it.

This module imports mlflow: only mlflow (through the entry point) and
:func:`ensure_registered` import it.
"""

from __future__ import annotations

import sys

from mlflow.tracking.context.abstract_context import RunContextProvider

from nb2flow.runtime.core.context import RUN

#: the tags set on an mlflow run started inside an nb2flow task run or flow body
TAGS = (
    "nb2flow.flow_name",
    "nb2flow.flow_run_name",
    "nb2flow.flow_run_id",
    "nb2flow.task_name",
    "nb2flow.task_run_id",
)


class Nb2flowRunContext(RunContextProvider):
    """Tags an mlflow run with the nb2flow flow run (and task run) that starts it."""

    def in_context(self) -> bool:
        return RUN.get() is not None

    def tags(self) -> dict[str, str]:
        ctx = RUN.get()
        if ctx is None:
            return {}
        tags = {
            "nb2flow.flow_name": ctx.flow_name,
            "nb2flow.flow_run_name": ctx.flow_run_name,
            "nb2flow.flow_run_id": ctx.flow_run_id,
        }
        if ctx.task_run_id is not None:
            tags["nb2flow.task_name"] = ctx.name
            tags["nb2flow.task_run_id"] = ctx.task_run_id
        return tags


def ensure_registered() -> bool:
    """Register the provider with mlflow's registry unless it already is (by the entry
    point). Returns whether mlflow has it now."""
    registry = sys.modules.get("mlflow.tracking.context.registry")
    providers = getattr(registry, "_run_context_provider_registry", None)
    if providers is None:
        return False
    if not any(type(p).__name__ == Nb2flowRunContext.__name__ for p in providers):
        providers.register(Nb2flowRunContext)
    return True
