"""Where nb2flow keeps its files and the environment variables that change what it does.

Every ``NB2FLOW_*`` variable is read here, and every on/off one through :func:`flag`, so
``NB2FLOW_STORE=false`` means the same as ``off``/``0``/``no`` wherever it is read.

=========================  ==========================================================
``NB2FLOW_HOME``           the home folder (default ``~/.nb2flow``): ``runs.db``, ``results/``
``NB2FLOW_RESULTS``        where cached task results live (default ``$NB2FLOW_HOME/results``)
``NB2FLOW_STORE``          on/off: record runs in the run store (default on)
``NB2FLOW_STORE_HELPER``   ``never``/``always``/``auto``: the store's helper process
``NB2FLOW_PANEL``          on/off: the live Jupyter panel (default on, in a kernel)
``NB2FLOW_CACHE``          on/off: task result caching (default on, for tasks asking for it)
``NB2FLOW_REFRESH_CACHE``  on/off: run cached tasks again and store the new values (default off)
``NB2FLOW_TASK_RUNNER``    the task runner of flows that do not name one (default ``threads``)
``NB2FLOW_KEEP_OUTPUTS``   on/off: flow runs keep every task run's value (``FlowRun.outputs``)
``NB2FLOW_CAPTURE``        on/off: record what tasks print, log and draw (default: on in scripts
                           run by ``run_cli`` and in Jupyter kernels, off elsewhere)
=========================  ==========================================================

The home is created ``0700`` and what nb2flow keeps there ``0600`` (:mod:`nb2flow.files`
has the helpers): :func:`ensure_home` is the one place the home is made.
"""

from __future__ import annotations

import os
from pathlib import Path

#: what :func:`flag` reads as off / as on (case and surrounding blanks ignored)
OFF = frozenset({"0", "off", "false", "no", "none"})
ON = frozenset({"1", "on", "true", "yes"})


def flag(name: str, default: bool) -> bool:
    """The on/off environment variable ``name``: ``default`` when unset, empty or not a
    word :data:`ON` or :data:`OFF` knows."""
    value = os.environ.get(name, "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return default


def home() -> Path:
    """``$NB2FLOW_HOME``, default ``~/.nb2flow``."""
    env = os.environ.get("NB2FLOW_HOME")
    return Path(env).expanduser() if env else Path.home() / ".nb2flow"


def ensure_home() -> Path:
    """The home folder, created ``0700`` when missing.

    An existing home the user shared on purpose (group-writable or setgid: a ``2775`` team
    folder) is left as it is, with one warning; one that is merely readable by others (the
    umask's ``0755``, as older nb2flow versions made it) is made private (``0700``), with
    one note.
    """
    from nb2flow import files

    path = home()
    files.private_dir(path)
    how = files.sharing(path)
    if how is None:
        return path
    if files.shared_on_purpose(path):
        files.warn_once(
            f"the home folder {path} is {how}: nb2flow leaves it as it is; the files it "
            "creates there are still owner-only (0600)",
            key=f"home:{path}",
        )
    else:
        try:
            old = files.tighten(path)
        except OSError:
            return path  # not ours to change: the store and cache checks still apply
        new = f"{os.stat(path).st_mode & 0o7777:04o}"
        files.warn_once(f"made the home folder {path} private ({old} -> {new})", key=f"home:{path}")
    return path


def results_dir() -> Path:
    """Where cached task results live: ``$NB2FLOW_RESULTS``, else ``$NB2FLOW_HOME/results``."""
    custom = os.environ.get("NB2FLOW_RESULTS")
    return Path(custom).expanduser() if custom else home() / "results"


def store_enabled() -> bool:
    """Whether runs are recorded in the run store (``NB2FLOW_STORE``, default on)."""
    return flag("NB2FLOW_STORE", True)


def panel_enabled() -> bool:
    """Whether a top-level run in a Jupyter kernel shows the live panel (``NB2FLOW_PANEL``)."""
    return flag("NB2FLOW_PANEL", True)


def cache_enabled() -> bool:
    """Whether tasks asking for caching are cached (``NB2FLOW_CACHE``, default on)."""
    return flag("NB2FLOW_CACHE", True)


def capture() -> bool | None:
    """``NB2FLOW_CAPTURE``: whether runs record their stdout/stderr, ``logging`` records and
    open figures: True (on), False (off), or None (unset: the runtime decides; on in the
    scripts ``run_cli`` runs and in a Jupyter kernel). ``log_prints=`` of a flow or a task
    decides for it."""
    value = os.environ.get("NB2FLOW_CAPTURE", "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return None


def refresh_cache() -> bool:
    """Whether every cached task runs again, replacing its entry (``NB2FLOW_REFRESH_CACHE``)."""
    return flag("NB2FLOW_REFRESH_CACHE", False)


def store_helper() -> str:
    """``NB2FLOW_STORE_HELPER``: ``never`` (also any off word), ``always`` or ``auto`` (the
    default: the helper starts when a flow gets big)."""
    value = os.environ.get("NB2FLOW_STORE_HELPER", "").strip().lower()
    if value == "never" or value in OFF:
        return "never"
    return "always" if value == "always" else "auto"


def task_runner() -> str | None:
    """``NB2FLOW_TASK_RUNNER``: the spec of the default task runner, if set."""
    return os.environ.get("NB2FLOW_TASK_RUNNER") or None


def keep_outputs() -> bool:
    """Whether flow runs keep every task run's value, for ``FlowRun.outputs`` and
    ``nb2flow check`` (``NB2FLOW_KEEP_OUTPUTS``, default off: a value is released as soon
    as nothing needs it)."""
    return flag("NB2FLOW_KEEP_OUTPUTS", False)
