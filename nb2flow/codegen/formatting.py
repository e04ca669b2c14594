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

import subprocess

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
    (text, a warning)."""
    binary = ruff_binary()
    if binary is None:
        return text, "ruff is not installed: the script is not formatted"
    for args in (UNUSED_IMPORTS_ARGS, RUFF_ARGS):
        proc = subprocess.run(
            [binary, *args],
            input=text.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            return text, "ruff could not format the script: " + (message[0] if message else "?")
        text = proc.stdout.decode("utf-8")
    return text, None
