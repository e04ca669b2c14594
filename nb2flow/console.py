"""What nb2flow shows on terminals: the rich console the commands print with, the one
sanitizer every text from a run goes through, and the one JSON writer of ``--json``.

Logs, errors, tracebacks, parameters, run and task names come from user code and from files
(the run store): printed raw, an escape sequence in them could rewrite the terminal (move
the cursor, hide text, set the window title, fake a prompt). :func:`printable` makes every
control character visible (``\\x1b``) instead, keeping newlines and tabs; the console of
:func:`rich_console` applies it to all the text it prints (rich's own styling is kept).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

#: width of tables written to a file or a pipe (rich would use 80 and cut columns short)
PIPE_WIDTH = 160

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides and
# isolates that reorder what is shown ("Trojan source")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` safe to write to a terminal: every control character and terminal escape
    sequence shown as its escape (``\\x1b[31m``), newlines and tabs kept."""
    s = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(_visible, s) if _CONTROL.search(s) else s


def rich_console(**kwargs: Any) -> Any:
    """A ``rich.console.Console`` whose text goes through :func:`printable`; when output is
    not a terminal (a log, a pipe, CI) and ``COLUMNS`` is not set, tables get
    :data:`PIPE_WIDTH` columns instead of 80."""
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        def _render_buffer(self, buffer: Any) -> str:
            return super()._render_buffer(
                seg if seg.control else Segment(printable(seg.text), seg.style) for seg in buffer
            )

    console = SafeConsole(**kwargs)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


# -- JSON --------------------------------------------------------------------------------------

#: deeper values than this are not written (an error line says where)
MAX_JSON_DEPTH = 200


class NotJSON(ValueError):
    """A value that has no JSON form (a reference cycle, nesting too deep)."""


def jsonable(value: Any, fallback: Any = repr) -> Any:
    """``value`` as data ``json.dumps`` writes as valid JSON: dict keys as text (a tuple key
    ``(1, 2)`` becomes ``"(1, 2)"``), tuples and sets as lists, NaN and infinities as
    ``null`` (JSON has neither), anything else through ``fallback``. Raises
    :class:`NotJSON` naming the place of a reference cycle or of nesting past
    :data:`MAX_JSON_DEPTH`."""
    return _convert(value, fallback, set(), 0, None)


def _where(path: Any) -> str:
    """``value[0]['a']`` from the chain ``((None, 0), 'a')`` (built only for an error)."""
    keys = []
    while path is not None:
        path, key = path
        keys.append(f"[{key!r}]")
    text = "value" + "".join(reversed(keys))
    return text if len(text) <= 80 else text[:60] + "..." + text[-17:]


def _convert(value: Any, fallback: Any, active: set[int], depth: int, path: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_JSON_DEPTH:
        raise NotJSON(f"{_where(path)} is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in active:
            raise NotJSON(f"{_where(path)} contains itself (a reference cycle)")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                out: Any = {}
                for k, v in value.items():
                    key = k if isinstance(k, str) else _key(k)
                    out[key] = _convert(v, fallback, active, depth + 1, (path, k))
                return out
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            return [
                _convert(v, fallback, active, depth + 1, (path, i)) for i, v in enumerate(items)
            ]
        finally:
            active.discard(id(value))
    converted = fallback(value)
    if converted is value or isinstance(converted, str):
        return converted if isinstance(converted, str) else repr(converted)
    return _convert(converted, fallback, active, depth + 1, path)


def _key(k: Any) -> str:
    if k is None or isinstance(k, (bool, int)):
        return "null" if k is None else str(k).lower() if isinstance(k, bool) else str(k)
    if isinstance(k, float):
        return repr(k) if math.isfinite(k) else "null"
    return str(k)


def dumps(value: Any, fallback: Any = repr, **kwargs: Any) -> str:
    """Valid JSON for ``value`` (see :func:`jsonable`), or :class:`NotJSON`."""
    import json

    return json.dumps(jsonable(value, fallback), allow_nan=False, **kwargs)
