"""Turn arbitrary text (tag names, headings, file stems) into safe Python identifiers.

The result is always ASCII, a valid identifier and never a keyword, so text taken from a
notebook can be pasted into generated code as a name without ever becoming code itself.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

MAX_LENGTH = 60

_NOT_WORD = re.compile(r"[^0-9A-Za-z_]+")


def identifier(text: str, *, fallback: str = "name", lower: bool = False) -> str:
    """``"Load the data!"`` -> ``load_the_data``; ``"2nd"`` -> ``_2nd``; ``"class"`` -> ``class_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _NOT_WORD.sub("_", ascii_text).strip("_")
    name = re.sub(r"__+", "_", name)
    if lower:
        name = name.lower()
    name = name[:MAX_LENGTH].rstrip("_")
    if not name:
        name = fallback
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _RESERVED:
        name += "_"
    return name


#: names that would mislead readers of generated code if used as identifiers
_RESERVED = {"None", "True", "False", "__builtins__", "__name__", "__file__"}


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is not in ``taken``; adds it to ``taken``."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
