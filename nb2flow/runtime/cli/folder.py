"""Where a flow runs: the working-directory rule of generated scripts.

A generated script runs in its notebook's folder, as the notebook's kernel does in Jupyter,
so every relative path (in the code, in parameter defaults, on the command line) means what
it meant in the notebook, and files the flow writes (``mlflow.db``, ``models/``) land where
the notebook puts them. ``--cwd DIR`` (relative to where the command was started) runs it
elsewhere. See docs/converter.md, "Where the flow runs".
"""

from __future__ import annotations

import os
import sys

#: the folder :func:`run_in_folder` entered for this process (its ``--cwd`` is then applied)
entered: str | None = None


def cwd_option(argv: list[str]) -> str | None:
    """The value of ``--cwd DIR`` / ``--cwd=DIR`` in ``argv`` (before any ``--``), or None."""
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == "--cwd" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--cwd="):
            return word.split("=", 1)[1]
    return None


def run_in_folder(script: str, folder: str, argv: list[str] | None = None) -> str:
    """Change to the folder a flow script runs in, before its module-level code runs.

    Generated scripts call it first thing under ``if __name__ == "__main__":`` with their
    notebook's folder relative to the script, so the flow runs where the notebook's kernel
    does: every relative path (in the code, in parameter defaults, on the command line)
    resolves in the notebook's folder. ``--cwd DIR`` on the command line (relative to where
    the command was started) wins. Exits 2 with one ``error:`` line when the folder does not
    exist. Returns the folder."""
    global entered
    given = cwd_option(sys.argv[1:] if argv is None else argv)
    if given is not None:
        target = os.path.abspath(given)
        what = "--cwd"
    else:
        target = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(script)), folder))
        what = "the notebook's folder"
    if not os.path.isdir(target):
        hint = "" if given is not None else "; pass --cwd DIR to run it elsewhere (--cwd . = here)"
        print(f"error: {script}: the flow runs in {what}, {target}, which is not a folder{hint}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    os.chdir(target)
    entered = target
    return target
