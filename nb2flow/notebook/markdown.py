"""Markdown cells as the converter uses them: their headings, and their text as comments.

Markdown never becomes code: :func:`markdown_comment` starts every line with ``#``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def has_heading(text: str) -> bool:
    return _HEADING.search(text) is not None


def headings(texts: Iterable[str]) -> list[str]:
    """The headings of ``texts`` (markdown cells), in order, without their ``#`` marks."""
    return [m.group(2).strip() for text in texts for m in _HEADING.finditer(text)]


def without_headings(text: str) -> str:
    return _HEADING.sub("", text)


def markdown_comment(text: str) -> str:
    """Markdown as comment lines: every line (by any line break Python or ``splitlines``
    knows) starts with ``#``, unprintable characters dropped, so text can never become code."""
    lines = []
    for line in text.strip().splitlines():
        line = "".join(ch for ch in line if ch.isprintable() or ch == "\t").rstrip()
        lines.append(f"# {line}" if line else "#")
    return "\n".join(lines)
