"""Edit a notebook's tags, and turn literals it reads into flow parameters, without a kernel.

:func:`edit_cells` is the one implementation behind ``nb2flow tag`` and the Jupyter
extension's tagging controls: a notebook node in, a new notebook node out (the input is not
changed), an :class:`~nb2flow.errors.Nb2flowError` naming the cell for anything it cannot do.
Writing the file is the caller's business.
"""

from __future__ import annotations

import ast
import copy
import io
import keyword
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nb2flow.errors import Nb2flowError, where
from nb2flow.notebook.identifiers import identifier
from nb2flow.notebook.tags import is_known_tag, parse_tags

#: the types a literal may have to become a parameter (they are also what a script's
#: command line can set)
PARAMETER_TYPES = (str, int, float, bool)


@dataclass
class Edit:
    """What :func:`edit_cells` made: the new notebook, and what it did, line by line."""

    notebook: Any  # an nbformat NotebookNode (a dict for a dict in)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_cell_numbers(text: str, count: int, label: str = "notebook") -> list[int]:
    """``"9,10"``, ``"3-5"``, ``"1,3-5,8"`` -> cell numbers (counted from 1, in the order
    given, without repeats), each checked against the notebook's `count` cells."""
    numbers: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise Nb2flowError(
                f"bad cell list {text!r}: expected numbers and ranges, like 9,10 or 3-5"
            ) from None
        if low > high:
            raise Nb2flowError(f"bad cell range {part.strip()!r}: the first number is larger")
        for number in (low, high):
            _check_number(number, count, label)
        numbers.extend(n for n in range(low, high + 1) if n not in numbers)
    return numbers


def _check_number(number: int, count: int, label: str) -> None:
    if not 1 <= number <= count:
        raise Nb2flowError(
            f"{label}: no cell {number} (the notebook has {count} cells, counted from 1)"
        )


def edit_cells(
    notebook: Any,
    *,
    cells: Sequence[int] = (),
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    params: Iterable[tuple[str, str]] = (),
    label: str = "notebook",
) -> Edit:
    """Tag cells and make parameters of literals; return the edited copy of `notebook`.

    `cells` are cell numbers counted from 1 over every cell (markdown too), as in every
    nb2flow message. Each tag of `add` is added to each of `cells`, each of `remove` taken
    off; the result must still be a valid set of tags (one role at most). Unknown tags are
    added with a warning, as JupyterLab allows any tag.

    Each ``(name, value)`` of `params` turns the literal `value` the cells read into the
    flow parameter `name`, with that literal as its default: every occurrence of the
    literal in `cells` (or, without cells, in every code cell) is replaced by `name`, and
    ``name = <literal>`` (the literal as written) is added to the ``parameters`` cell,
    which is created, tagged and placed before the first code cell when there is none.
    `value` is the literal's text or its value: ``'./data/x.parquet'``, or
    ``./data/x.parquet``; ``0.1``, ``5``, ``-3``, ``True``; text that is not a Python literal
    means that string. `name` must be a Python identifier no cell uses yet (or a parameter
    whose default already is this literal).

    `label` (the file name) starts every message: ``label, cell N: ...``.
    """
    nb = copy.deepcopy(notebook)
    all_cells = nb["cells"]
    for number in cells:
        _check_number(number, len(all_cells), label)
    edit = Edit(nb)
    if (add or remove) and not cells:
        raise Nb2flowError("give the cells to tag (--cell N, or a list: 9,10 or 3-5)")
    for number in cells if add or remove else ():
        _tag(all_cells[number - 1], add, remove, where(label, number), edit)
    for name, value in params:
        _make_parameter(nb, list(cells), name, value, label, edit)
    return edit


# --- tags ----------------------------------------------------------------------------------


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags") or [])


def _tag(cell: Any, add: Sequence[str], remove: Sequence[str], loc: str, edit: Edit) -> None:
    tags = _tags(cell)
    for tag in add:
        if not tag.strip() or tag != tag.strip() or "\n" in tag:
            raise Nb2flowError(f"{loc}: malformed tag {tag!r}")
        parse_tags([tag], loc)  # raises on a malformed option
        if not is_known_tag(tag):
            edit.warnings.append(f"{loc}: {tag!r} is not an nb2flow tag (added anyway)")
        if tag not in tags:
            tags.append(tag)
    for tag in remove:
        if tag not in tags:
            edit.warnings.append(f"{loc}: no tag {tag!r} to remove")
        tags = [t for t in tags if t != tag]
    parse_tags(tags, loc)  # the result must make sense as a whole (one role)
    _set_tags(cell, tags)
    edit.changes.append(f"{loc.rpartition(', ')[2]}: tags {', '.join(tags) or '(none)'}")


def _set_tags(cell: Any, tags: list[str]) -> None:
    metadata = cell.setdefault("metadata", {})
    if tags:
        metadata["tags"] = tags
    else:
        metadata.pop("tags", None)


# --- parameters ----------------------------------------------------------------------------


@dataclass
class _Literal:
    start: tuple[int, int]  # (line from 1, column), as tokenize counts
    end: tuple[int, int]
    text: str  # as written, e.g. "'./data/x.parquet'" or "-0.5"


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _wanted(value: str) -> list[object]:
    """The values `value` may mean, most likely first: the Python literal it spells
    (``'x'``, ``5``, ``True``), then the text itself."""
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return [value]
    if type(parsed) in PARAMETER_TYPES and parsed != value:
        return [parsed, value]
    return [value]


def _literals(source: str, wanted: object, loc: str) -> list[_Literal]:
    """Where the cell's code spells the literal `wanted` (strings, numbers, True/False; a
    minus sign in front of a number counts when it is a sign). Comments do not count."""
    found = []
    for literal, value, signed in _spelled(source, loc):
        if _same(value, wanted):
            found.append(literal)
        elif signed is not None and _same(signed[1], wanted):
            found.append(signed[0])
    return found


def cell_literals(source: str) -> list[str]:
    """The literals a cell's code spells that can become parameters, as written, each once,
    in order (a signed number with its sign): what the Jupyter controls offer to pick.
    Empty when the code cannot be read."""
    texts: dict[str, None] = {}
    try:
        for literal, _, signed in _spelled(source, "cell"):
            texts[signed[0].text if signed is not None else literal.text] = None
    except Nb2flowError:
        return []
    return list(texts)


def _spelled(
    source: str, loc: str
) -> Iterator[tuple[_Literal, object, tuple[_Literal, object] | None]]:
    """Every literal of a parameter type the code spells: (literal, value, the literal with
    its minus sign and its value when a sign precedes the number, else None)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise Nb2flowError(f"{loc}: cannot read the cell's code ({exc.args[0]})") from None
    broken = next((t for t in tokens if t.type == tokenize.ERRORTOKEN and _opens(t.string)), None)
    if broken is not None:  # IPython's ! and ? are error tokens too, and fine
        raise Nb2flowError(
            f"{loc}: cannot read the cell's code (a string opened at line {broken.start[0]} "
            "is not closed)"
        )
    previous: tokenize.TokenInfo | None = None
    for i, token in enumerate(tokens):
        if token.type in (tokenize.STRING, tokenize.NUMBER, tokenize.NAME):
            if token.type != tokenize.NAME or token.string in ("True", "False"):
                value = _value(token.string)
                if type(value) in PARAMETER_TYPES:
                    signed = None
                    if (
                        token.type == tokenize.NUMBER
                        and previous is not None
                        and previous.string == "-"
                        and previous.end == token.start
                        and _is_sign(tokens[i - 2] if i >= 2 else None)
                    ):
                        text = "-" + token.string
                        signed = (_Literal(previous.start, token.end, text), -value)  # type: ignore[operator]
                    yield _Literal(token.start, token.end, token.string), value, signed
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token


def _opens(text: str) -> bool:
    """Whether an error token is a string's opening quote (with its prefix, if any)."""
    return text.lstrip("rRbBuUfF")[:1] in ("'", '"')


def _value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None  # an f-string, say


def _same(value: object, wanted: object) -> bool:
    return type(value) is type(wanted) and type(value) in PARAMETER_TYPES and value == wanted


def _is_sign(before: tokenize.TokenInfo | None) -> bool:
    """Whether a ``-`` after `before` is a sign, not a subtraction."""
    if before is None or before.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT):
        return True
    if before.type == tokenize.OP:
        return before.string not in (")", "]", "}")
    return (
        before.type == tokenize.NAME
        and keyword.iskeyword(before.string)
        and (before.string not in ("True", "False", "None"))
    )


def _replace(source: str, spans: list[_Literal], name: str) -> str:
    lines = source.splitlines(keepends=True) or [""]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(at: tuple[int, int]) -> int:
        return offsets[at[0] - 1] + at[1]

    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        source = source[: offset(span.start)] + name + source[offset(span.end) :]
    return source


def _parses(source: str) -> bool:
    from nb2flow.notebook.magics import to_python

    try:
        ast.parse(to_python(source, "cell").code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _names(source: str) -> set[str]:
    """Every name the cell's code binds or reads (empty when it is not Python)."""
    from nb2flow.notebook.magics import to_python

    try:
        tree = ast.parse(to_python(source, "cell").code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def _parameters_cell(cells: list[Any], label: str) -> int | None:
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            role = parse_tags(_tags(cell), where(label, index + 1)).role
            if role == "parameters":
                return index
    return None


def _assigned(source: str, name: str) -> object:
    """The literal value `source` (a parameters cell) assigns to `name`, else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            or isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
        ):
            try:
                return ast.literal_eval(node.value) if node.value is not None else None
            except ValueError:
                return None
    return None


def _make_parameter(
    nb: Any, numbers: list[int], name: str, value: str, label: str, edit: Edit
) -> None:
    cells = nb["cells"]
    if identifier(name) != name or not name.isidentifier():
        raise Nb2flowError(
            f"{label}: parameter name {name!r} is not a Python identifier "
            f"(try {identifier(name)!r})"
        )
    params_index = _parameters_cell(cells, label)
    searched = numbers or [
        i + 1
        for i, cell in enumerate(cells)
        if cell.get("cell_type") == "code" and i != params_index
    ]
    for number in numbers:
        if cells[number - 1].get("cell_type") != "code":
            raise Nb2flowError(f"{where(label, number)}: not a code cell: it has no literals")
        if number - 1 == params_index:
            raise Nb2flowError(
                f"{where(label, number)}: this is the parameters cell; its literals are "
                "parameters already"
            )

    # the literal, in the first of its meanings that the cells spell
    found: dict[int, list[_Literal]] = {}
    wanted: object = value
    for wanted in _wanted(value):
        found = {}
        for number in searched:
            try:
                spans = _literals(_source(cells[number - 1]), wanted, where(label, number))
            except Nb2flowError:
                if numbers:  # a cell named on purpose; else one of every cell (%%bash, say)
                    raise
                continue
            if spans:
                found[number] = spans
        if found:
            break
    if not found:
        place = where(label, numbers[0]) if len(numbers) == 1 else label
        scope = "this cell" if len(numbers) == 1 else "the cells given" if numbers else "any cell"
        raise Nb2flowError(f"{place}: no literal {value!r} in {scope}")

    # the name must be new, or a parameter with this very default
    params_source = _source(cells[params_index]) if params_index is not None else ""
    existing = _assigned(params_source, name) if params_index is not None else None
    reuse = params_index is not None and _same(existing, wanted)
    if params_index is not None and existing is not None and not reuse:
        raise Nb2flowError(
            f"{where(label, params_index + 1)}: {name!r} is already a parameter, with "
            f"default {existing!r}"
        )
    if not reuse:
        for index, cell in enumerate(cells):
            if cell.get("cell_type") == "code" and name in _names(_source(cell)):
                raise Nb2flowError(
                    f"{where(label, index + 1)}: the name {name!r} is in use; choose another"
                )
    first = min(found)
    if params_index is not None and params_index + 1 > first:
        raise Nb2flowError(
            f"{where(label, params_index + 1)}: the parameters cell comes after cell {first}, "
            f"which would read {name} before it is set: move it up first"
        )

    for number, spans in found.items():
        cell = cells[number - 1]
        before = _source(cell)
        after = _replace(before, spans, name)
        if _parses(before) and not _parses(after):  # pragma: no cover - a token is a token
            raise Nb2flowError(f"{where(label, number)}: replacing {value!r} breaks the cell")
        cell["source"] = after
        times = f" ({len(spans)} times)" if len(spans) > 1 else ""
        edit.changes.append(f"cell {number}: {spans[0].text} -> parameter {name}{times}")

    assignment = f"{name} = {found[first][0].text}"
    if reuse:
        return
    if params_index is None:
        params_index = next(i for i, c in enumerate(cells) if c.get("cell_type") == "code")
        cells.insert(params_index, _new_parameters_cell(nb, assignment))
        edit.changes.append(
            f"cell {params_index + 1}: a new cell tagged parameters: {assignment} "
            "(the cells after it move down by one)"
        )
        return
    cell = cells[params_index]
    cell["source"] = (params_source.rstrip("\n") + "\n" if params_source.strip() else "") + (
        assignment
    )
    edit.changes.append(f"cell {params_index + 1}: + {assignment}")


def _new_parameters_cell(nb: Any, source: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        del cell["id"]  # cell ids came with nbformat 4.5
    return cell
