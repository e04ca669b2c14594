"""The observers of top-level flow runs, registered by name (as papermill registers its
engines): the engine calls :func:`attach` when a top-level run starts and :func:`detach`
when it has ended, and knows no observer itself.

Built in, in the order they attach:

``store``     records the run (``nb2flow.store.recording``); off with ``NB2FLOW_STORE=off``
``panel``     the live Jupyter panel (``nb2flow.jupyter.panel``), only once ``ipykernel`` is
              imported; off with ``NB2FLOW_PANEL=off``
``echo``      log lines on stderr, only when no attached observer shows them

``run_cli`` registers its terminal reporter (``terminal``) for the run it starts. An
observer given as ``"module:attr"`` is imported when a run first needs it, so the runtime
imports neither the store nor Jupyter. What an observer receives and returns is in
:mod:`nb2flow.runtime.core.observers`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from nb2flow import settings
from nb2flow.runtime.core.observers import Attachment, Observer, RunStart
from nb2flow.runtime.core.tracebacks import error_line


@dataclass(frozen=True)
class Registration:
    name: str
    #: the observer, or ``"module:attr"`` naming it (imported on first use)
    target: Observer | str
    #: attach only when this module is already imported (the panel: ``ipykernel``)
    when_imported: str | None = None
    #: the setting that turns it on or off (read at each run)
    enabled: Callable[[], bool] | None = None
    #: attach only when no observer attached before it shows the run's logs
    fallback_for_logs: bool = False


_registry: dict[str, Registration] = {}


def register(
    name: str,
    target: Observer | str,
    *,
    when_imported: str | None = None,
    enabled: Callable[[], bool] | None = None,
    fallback_for_logs: bool = False,
) -> None:
    """Add (or replace) the observer ``name``. Fallbacks attach after every other one."""
    _registry[name] = Registration(name, target, when_imported, enabled, fallback_for_logs)


def unregister(name: str) -> None:
    _registry.pop(name, None)


def names() -> list[str]:
    return list(_registry)


def _resolve(target: Observer | str) -> Observer:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        observer: Observer = getattr(importlib.import_module(module), attr)
        return observer
    return target


def attach(run: RunStart) -> list[Attachment]:
    """Call every enabled observer for ``run``; return the attachments, in order. An
    observer that raises is reported on stderr and left out: it never stops the run."""
    regs = sorted(_registry.values(), key=lambda r: r.fallback_for_logs)  # stable
    attached: list[Attachment] = []
    for reg in regs:
        if reg.when_imported is not None and reg.when_imported not in sys.modules:
            continue
        if reg.enabled is not None and not reg.enabled():
            continue
        if reg.fallback_for_logs and any(a.shows_logs for a in attached):
            continue
        try:
            attachment = _resolve(reg.target)(run)
        except Exception as exc:  # noqa: BLE001 - an observer must not stop the flow
            print(f"warning: the {reg.name} observer failed: {error_line(exc)}", file=sys.stderr)
            continue
        if attachment is not None:
            attached.append(attachment)
    return attached


def detach(attached: list[Attachment]) -> None:
    """Close the attachments of an ended run, last attached first."""
    for attachment in reversed(attached):
        if attachment.close is not None:
            try:
                attachment.close()
            except Exception as exc:  # noqa: BLE001
                print(f"warning: an observer failed to close: {error_line(exc)}", file=sys.stderr)


def _echo(run: RunStart) -> Attachment:
    from nb2flow.runtime.observation import logs

    logs.echo(True)
    return Attachment(close=lambda: logs.echo(False))


register("store", "nb2flow.store.recording:observe", enabled=settings.store_enabled)
register(
    "panel",
    "nb2flow.jupyter.panel:observe",
    when_imported="ipykernel",
    enabled=settings.panel_enabled,
)
register("echo", _echo, fallback_for_logs=True)
