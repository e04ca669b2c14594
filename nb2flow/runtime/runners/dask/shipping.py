"""Module shipping: making a task's module usable on the Dask workers.

Modules of the Python installation are imported by name there. Others (a script, a
notebook's ``__main__``, a test module) are pickled by value with each task; a script nb2flow
generated is also uploaded, so its module level (imports, ``setup`` cells) runs once on every
worker, as it does in the flow process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from nb2flow.errors import Nb2flowError
from nb2flow.generated import installation_roots, is_generated
from nb2flow.runtime.core.tracebacks import error_line
from nb2flow.runtime.runners.dask.connection import Connection

#: (scheduler id, plugin name) of the scripts uploaded from this process
_uploaded: set[tuple[str, str]] = set()


def installed(path: str) -> bool:
    """Whether a module file belongs to the Python installation (stdlib, site-packages):
    such modules are imported by name on workers; others are shipped."""
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(r) + os.sep) for r in installation_roots())


class Shipper:
    """Ships each task module once per flow run (a new Shipper for every run)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._shipped: set[str] = set()

    def ship(self, task: Any) -> None:
        """Make ``task``'s module usable on the workers (once per module)."""
        fn = getattr(task, "fn", None)
        glb = getattr(fn, "__globals__", None) or {}
        mod_name = glb.get("__name__") or getattr(fn, "__module__", None)
        if mod_name is None or mod_name in self._shipped:
            return
        self._shipped.add(mod_name)
        if mod_name == "nb2flow" or mod_name.startswith("nb2flow."):
            return
        path = glb.get("__file__")
        if not path or installed(path):
            return
        module = sys.modules.get(mod_name)
        if mod_name != "__main__" and getattr(module, "__dict__", None) is glb:
            # (__main__, and modules missing from sys.modules, are pickled by value anyway)
            import cloudpickle

            cloudpickle.register_pickle_by_value(module)
        if path.endswith(".py") and is_generated(path):
            self._upload(path)

    def _upload(self, path: str) -> None:
        from distributed.diagnostics.plugin import UploadFile

        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        name = f"nb2flow-upload-{stem}-{digest}"
        key = (self.connection.scheduler_id(), name)
        if key in _uploaded:
            return
        try:
            self.connection.active.register_plugin(UploadFile(path), name=name)
        except Exception as exc:  # noqa: BLE001
            raise Nb2flowError(
                f"cannot load {path} on the Dask workers: {error_line(exc)} "
                "(the workers need the script's imports installed)"
            ) from None
        _uploaded.add(key)
