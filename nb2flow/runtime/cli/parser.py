"""The parser of a flow's command line: one ``--kebab-case`` option per flow parameter, typed
from its hint or default (bools as ``--x/--no-x``, lists as several values, dicts as JSON
objects), plus the runtime options ``--task-runner`` (alias ``--executor``), ``--quiet``,
``--no-store`` and ``--json``. A parameter whose option would be one of those (or
``--help``, or another parameter's) gets ``--param-<name>`` instead: the script keeps
working, and ``--help`` shows it."""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import types
import typing
from pathlib import Path, PurePath
from typing import Any

#: the options of the script itself: the runtime options and argparse's help
RESERVED_OPTIONS = frozenset(
    {
        "-h",
        "--help",
        "--task-runner",
        "--executor",
        "-q",
        "--quiet",
        "--no-store",
        "--json",
        "--cwd",
        "--tag",
        "--no-capture",
    }
)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"key\": 1}}', not {text!r}"
        )
    return value


def _json_object_or_null(text: str) -> dict[str, Any] | None:
    return None if text.strip() == "null" else _json_object(text)


def _forms(stem: str, boolean: bool) -> set[str]:
    return {f"--{stem}", f"--no-{stem}"} if boolean else {f"--{stem}"}


def parameter_options(params: list[tuple[str, bool]]) -> dict[str, str]:
    """The option of each flow parameter (``(name, is_bool)``, in signature order):
    ``--kebab-name``, or ``--param-kebab-name`` when that (or, for a bool, its ``--no-``
    form) is a runtime option or another parameter's."""
    natural = {name: _forms(name.replace("_", "-"), boolean) for name, boolean in params}
    seen: dict[str, int] = {}
    for forms in natural.values():
        for form in forms:
            seen[form] = seen.get(form, 0) + 1
    options: dict[str, str] = {}
    taken = set(RESERVED_OPTIONS)
    for name, _ in params:
        forms = natural[name]
        if forms.isdisjoint(RESERVED_OPTIONS) and all(seen[f] == 1 for f in forms):
            options[name] = "--" + name.replace("_", "-")
            taken |= forms
    for name, boolean in params:
        if name in options:
            continue
        stem = "param-" + name.replace("_", "-")
        while not _forms(stem, boolean).isdisjoint(taken):
            stem = "param-" + stem
        options[name] = "--" + stem
        taken |= _forms(stem, boolean)
    return options


def _unwrap_optional(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _option_spec(hint: Any, default: Any) -> dict[str, Any]:
    """argparse keyword arguments for a parameter with this type hint and default."""
    empty = inspect.Parameter.empty
    if hint is empty or hint is Any or isinstance(hint, str):  # str: a hint we cannot resolve
        hint = type(default) if default is not empty and default is not None else str
    unwrapped = _unwrap_optional(hint)
    optional = unwrapped is not hint or default is None
    hint = unwrapped
    origin = typing.get_origin(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is typing.Literal:
        choices = list(typing.get_args(hint))
        kind = type(choices[0]) if choices else str
        return {"type": kind, "choices": choices}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = hint.__members__

        def to_enum(text: str) -> Any:
            try:
                return members[text]
            except KeyError:
                raise argparse.ArgumentTypeError(
                    f"choose one of {', '.join(members)}, not {text!r}"
                ) from None

        return {"type": to_enum, "metavar": "{" + ",".join(members) + "}"}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        args = typing.get_args(hint)
        item = args[0] if args and args[0] is not Ellipsis else str
        item = item if item in (int, float, str) or item is Path else _json_or_text
        return {"nargs": "*", "type": item, "_container": origin or hint}
    if origin is dict or hint is dict:
        return {"type": _json_object_or_null if optional else _json_object, "metavar": "JSON"}
    if hint in (int, float, str):
        return {"type": hint}
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return {"type": hint}
    if isinstance(hint, type) and hint.__module__ == "datetime" and hasattr(hint, "fromisoformat"):
        return {"type": hint.fromisoformat}
    return {"type": _json_or_text}


def build_parser(
    flow: Any, prog: str | None = None
) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser of a flow's command line and the map parameter name -> argparse dest."""
    doc = (flow.description or "").strip().splitlines()
    first = doc[0].lstrip("#").strip() if doc else ""  # a markdown heading reads as a title
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Run the flow {flow.name!r}" + (f": {first}" if first else "."),
    )
    try:
        hints = typing.get_type_hints(flow.fn)
    except Exception:  # noqa: BLE001 - unresolvable hints: fall back to the defaults' types
        hints = {}
    group = parser.add_argument_group("flow parameters")
    dests: dict[str, str] = {}
    specs: dict[str, dict[str, Any]] = {}
    for name, param in flow.signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        specs[name] = _option_spec(hints.get(name, param.annotation), param.default)
    options = parameter_options(
        [(n, spec.get("action") is argparse.BooleanOptionalAction) for n, spec in specs.items()]
    )
    for name, spec in specs.items():
        param = flow.signature.parameters[name]
        option = options[name]
        spec.pop("_container", None)
        spec.setdefault("metavar", name.upper())
        dest = f"param_{name}"
        dests[name] = dest
        required = param.default is inspect.Parameter.empty
        kind = spec.get("type")
        kind_name = getattr(kind, "__name__", "") if kind not in (_json_or_text, None) else ""
        if spec.get("action") is argparse.BooleanOptionalAction:
            kind_name = "bool"
        elif spec.get("nargs") == "*":
            kind_name = f"list of {kind_name or 'values'}"
        shown = "required" if required else f"default: {param.default!r}"
        if kind_name and kind_name not in ("_json_object", "_json_object_or_null", "to_enum"):
            shown = f"{kind_name}, {shown}"
        if option != "--" + name.replace("_", "-"):
            shown += f"; parameter {name!r}"
        group.add_argument(
            option,
            dest=dest,
            required=required,
            help=shown,
            **spec,
            **({} if required else {"default": param.default}),
        )
    rt = parser.add_argument_group("runtime options")
    rt.add_argument(
        "--task-runner",
        "--executor",
        dest="nb2flow_task_runner",
        metavar="RUNNER",
        help="where tasks run: threads[:N] (default), processes[:N], sequential, "
        "dask, dask://HOST:PORT",
    )
    rt.add_argument(
        "-q", "--quiet", dest="nb2flow_quiet", action="store_true", help="no progress display"
    )
    rt.add_argument(
        "--no-store",
        dest="nb2flow_no_store",
        action="store_true",
        help="do not record this run in the run history",
    )
    rt.add_argument(
        "--json",
        dest="nb2flow_json",
        action="store_true",
        help="print the flow's returned value as JSON on stdout (everything else goes to stderr)",
    )
    rt.add_argument(
        "--tag",
        dest="nb2flow_tags",
        metavar="TAG",
        action="append",
        default=[],
        help="tag the run (repeatable); `nb2flow runs --tag TAG` lists the runs with it",
    )
    rt.add_argument(
        "--no-capture",
        dest="nb2flow_no_capture",
        action="store_true",
        help="leave what tasks print and log on the terminal instead of recording it",
    )
    rt.add_argument(
        "--cwd",
        dest="nb2flow_cwd",
        metavar="DIR",
        help="run in DIR: relative paths resolve there (default for a generated script: "
        "its notebook's folder, as in Jupyter)",
    )
    return parser, dests
