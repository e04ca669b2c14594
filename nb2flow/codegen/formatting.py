"""Format generated code with ruff, with a fixed configuration.

``--isolated`` ignores every configuration file, so the output depends only on the code
(and the ruff version), never on the user's ``pyproject.toml``: same notebook, same bytes.

First the imports nothing in the script uses are dropped (ruff's F401 fix): the notebook's
imports gathered at the top serve the cells that became tasks, and a cell left out of the
flow, a display-only cell or a translated magic may have been their only user. Kept: an
import the notebook marks ``# noqa`` (an import for its side effects, such as
``from sklearn.experimental import enable_iterative_imputer  # noqa``) and the imports of
``setup`` cells (declared global in the setup function: what a notebook runs first, as it
wrote it).
"""

from __future__ import annotations

import os
import subprocess
import threading
from subprocess import PIPE

#: drop unused imports (ruff's fix of F401)
UNUSED_IMPORTS_ARGS = (
    "check",
    "--isolated",
    "--select",
    "F401",
    "--fix-only",
    "--exit-zero",
    "--quiet",
    "--target-version",
    "py311",
    "--stdin-filename",
    "generated.py",
    "-",
)
RUFF_ARGS = (
    "format",
    "--isolated",
    "--line-length",
    "100",
    "--target-version",
    "py311",
    "--stdin-filename",
    "generated.py",
    "-",
)


def ruff_binary() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return None
    try:
        return str(find_ruff_bin())
    except FileNotFoundError:
        return None


def format_code(text: str) -> tuple[str, str | None]:
    """(formatted text without unused imports, None) or, when ruff is unavailable or fails,
    (text, a warning).

    The two passes run as a pipeline, the fix's output fed to the formatter as it comes:
    two processes started at once, not one after the other (most of a small notebook's
    conversion is waiting for them)."""
    binary = ruff_binary()
    if binary is None:
        return text, "ruff is not installed: the script is not formatted"
    read, write = os.pipe()
    try:
        fix = subprocess.Popen(
            [binary, *UNUSED_IMPORTS_ARGS], stdin=PIPE, stdout=write, stderr=PIPE
        )
        try:
            fmt = subprocess.Popen([binary, *RUFF_ARGS], stdin=read, stdout=PIPE, stderr=PIPE)
        except BaseException:
            fix.kill()
            fix.communicate()
            raise
    finally:
        os.close(read)
        os.close(write)
    fixed: list[bytes] = []  # the fix's stderr
    feeding = threading.Thread(target=lambda: fixed.extend(fix.communicate(text.encode("utf-8"))))
    feeding.start()
    out, err = fmt.communicate()
    feeding.join()
    for proc, stderr in ((fix, fixed[1]), (fmt, err)):
        if proc.returncode != 0:
            message = stderr.decode("utf-8", "replace").strip().splitlines()
            return text, "ruff could not format the script: " + (message[0] if message else "?")
    return out.decode("utf-8"), None
