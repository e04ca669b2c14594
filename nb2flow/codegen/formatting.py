"""Format generated code with ruff, with a fixed configuration.

``--isolated`` ignores every configuration file, so the output depends only on the code
(and the ruff version), never on the user's ``pyproject.toml``: same notebook, same bytes.
"""

from __future__ import annotations

import subprocess

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
    """(formatted text, None) or, when ruff is unavailable or fails, (text, a warning)."""
    binary = ruff_binary()
    if binary is None:
        return text, "ruff is not installed: the script is not formatted"
    proc = subprocess.run(
        [binary, *RUFF_ARGS],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return text, "ruff could not format the script: " + (message[0] if message else "?")
    return proc.stdout.decode("utf-8"), None
