"""The tag grammar: JupyterLab cell tags -> what the converter does with the cell.

| tag | meaning |
|---|---|
| ``task`` / ``task:NAME`` | this cell starts a task; untagged code cells that follow join it |
| ``parameters`` | literal assignments become flow parameters and CLI options |
| ``setup`` | module-level code run once at import |
| ``skip`` | left out of the flow |
| ``after:NAME`` | extra ordering edge: run after task NAME |
| ``output:NAME`` | the flow returns variable NAME (its value at the end of the notebook) |
| ``retries:N``, ``retry-delay:S``, ``timeout:S``, ``cache`` | task options |

Tag text never becomes code: names are turned into identifiers
(:func:`nb2flow.notebook.identifiers.identifier`), numbers are parsed into numbers; an
``output:`` name must already be one (it names a variable of the notebook).
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field

from nb2flow.errors import Nb2flowError
from nb2flow.notebook.identifiers import identifier

#: tags other tools write that nb2flow deliberately ignores without a warning
IGNORED_TAGS = {
    "injected-parameters",  # papermill writes it below a parameters cell
    "hide-input",
    "hide-output",
    "hide-cell",
    "remove-input",
    "remove-output",
    "remove-cell",
    "raises-exception",
    "nbval-ignore-output",
    "nbval-skip",
}

ROLE_TAGS = ("task", "parameters", "setup", "skip")


@dataclass
class CellTags:
    """The meaning of one cell's tags."""

    role: str | None = None  # "task", "parameters", "setup", "skip" or None (untagged)
    task_name: str | None = None  # identifier from task:NAME
    raw_task_name: str | None = None  # the tag text, for messages
    after: list[str] = field(default_factory=list)  # identifiers
    outputs: list[str] = field(default_factory=list)  # variables the flow returns
    options: dict[str, float | int | bool] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _number(value: str, tag: str, loc: str, *, integer: bool, positive: bool) -> int | float:
    text = value.strip()
    try:
        number: int | float = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise Nb2flowError(f"{loc}: malformed tag {tag!r}: expected {kind}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise Nb2flowError(f"{loc}: malformed tag {tag!r}: expected a finite number")
    if number < 0 or (positive and number == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise Nb2flowError(f"{loc}: malformed tag {tag!r}: the value must be {bound}")
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    return number


#: the numeric task options: tag -> (option key, whole number?, must be > 0?, label)
NUMBER_OPTIONS: dict[str, tuple[str, bool, bool, str]] = {
    "retries": ("retries", True, False, "retries"),
    "retry-delay": ("retry_delay_seconds", False, False, "retry delay (s)"),
    "timeout": ("timeout_seconds", False, True, "timeout (s)"),
}
#: spellings accepted besides the ones above
_OPTION_ALIASES = {"retry_delay": "retry-delay"}


def grammar() -> dict[str, object]:
    """The tag grammar as data, for editors (the JupyterLab extension's tag controls take it
    from the server, so this module stays its single source of truth)::

        {"roles": [...], "flags": ["cache"], "options": [{"tag", "key", "integer",
         "min", "exclusive_min", "label"}], "after": "after", "output": "output",
         "hard_keywords": [...], "name_pattern": regex,
         "keywords": [...], "ignored": [...]}
    """
    return {
        "roles": list(ROLE_TAGS),
        "named_role": "task",
        "flags": ["cache"],
        "options": [
            {
                "tag": tag,
                "key": key,
                "integer": integer,
                "min": 0,
                "exclusive_min": positive,
                "label": label,
            }
            for tag, (key, integer, positive, label) in NUMBER_OPTIONS.items()
        ],
        "after": "after",
        # output:NAME names a variable the flow returns: any identifier but the hard
        # keywords (is_variable_name; `type` and `match` are variables too)
        "output": "output",
        "hard_keywords": sorted(keyword.kwlist),
        # what identifier() keeps unchanged: the controls accept only names that stay as typed
        "name_pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
        "keywords": sorted([*keyword.kwlist, *keyword.softkwlist]),
        "ignored": sorted(IGNORED_TAGS),
    }


def parse_tags(tags: tuple[str, ...] | list[str], loc: str) -> CellTags:
    """Interpret one cell's tags. ``loc`` (``file, cell N``) prefixes every message."""
    result = CellTags()
    roles: list[str] = []
    for raw in tags:
        tag = raw.strip()
        head, sep, value = tag.partition(":")
        head = head.strip().lower()
        if head == "task":
            roles.append("task")
            if sep:
                if not value.strip():
                    raise Nb2flowError(f"{loc}: malformed tag {raw!r}: task: needs a name")
                name = identifier(value.strip(), fallback="task")
                result.task_name, result.raw_task_name = name, value.strip()
                if name != value.strip():
                    result.warnings.append(
                        f"{loc}: task name {value.strip()!r} is not a Python identifier; "
                        f"using {name!r}"
                    )
        elif head in ("parameters", "setup", "skip") and not sep:
            roles.append(head)
        elif head == "after":
            if not value.strip():
                raise Nb2flowError(f"{loc}: malformed tag {raw!r}: after: needs a task name")
            result.after.append(identifier(value.strip(), fallback="task"))
        elif head == "output":
            name = value.strip()
            if not sep or not is_variable_name(name):
                raise Nb2flowError(
                    f"{loc}: malformed tag {raw!r}: output: needs a variable name "
                    "(output:NAME, one per tag)"
                )
            if name not in result.outputs:
                result.outputs.append(name)
        elif _OPTION_ALIASES.get(head, head) in NUMBER_OPTIONS and sep:
            key, integer, positive, _ = NUMBER_OPTIONS[_OPTION_ALIASES.get(head, head)]
            result.options[key] = _number(value, raw, loc, integer=integer, positive=positive)
        elif head == "cache" and not sep:
            result.options["cache"] = True
        elif head in ("retries", "retry-delay", "timeout"):
            raise Nb2flowError(f"{loc}: malformed tag {raw!r}: expected {head}:VALUE")
        elif head in ("cache", "parameters", "setup", "skip"):
            raise Nb2flowError(f"{loc}: malformed tag {raw!r}: {head} takes no value")
        elif tag in IGNORED_TAGS or not tag:
            continue
        else:
            result.warnings.append(f"{loc}: unknown tag {raw!r} ignored")
    distinct = sorted(set(roles), key=ROLE_TAGS.index)
    if len(distinct) > 1:
        raise Nb2flowError(
            f"{loc}: conflicting tags {', '.join(distinct)}: a cell has one role at most"
        )
    result.role = distinct[0] if distinct else None
    if result.role in ("setup", "skip", "parameters") and (result.options or result.after):
        result.warnings.append(f"{loc}: task options on a {result.role} cell are ignored")
    if result.role == "skip" and result.outputs:
        result.warnings.append(f"{loc}: output: tags on a skip cell are ignored")
    return result


def is_variable_name(name: str) -> bool:
    """Can ``name`` be a variable of the notebook (``output:NAME``, ``--outputs``)? A Python
    identifier that is not a keyword (soft keywords such as ``type`` or ``match`` are)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def is_known_tag(tag: str) -> bool:
    """True when ``tag`` is part of the grammar (used by ``nb2flow tag --add``)."""
    head, sep, _ = tag.strip().partition(":")
    head = head.lower()
    if head in ("task",):
        return True
    if head in ("parameters", "setup", "skip", "cache"):
        return not sep
    return bool(sep) and head in (
        "after",
        "output",
        "retries",
        "retry-delay",
        "retry_delay",
        "timeout",
    )
