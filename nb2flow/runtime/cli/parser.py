"""The parser of a flow's command line: one ``--kebab-case`` option per flow parameter, typed
from its hint or default (bools as ``--x/--no-x``, lists as several values, dicts as JSON),
plus the runtime options ``--task-runner`` (alias ``--executor``), ``--quiet``,
``--no-store`` and ``--json``."""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import types
import typing
from pathlib import Path, PurePath
from typing import Any

from nb2flow.errors import Nb2flowError

_RUNTIME_OPTIONS = ("--task-runner", "--executor", "--quiet", "-q", "--no-store", "--json")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r}") from None


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
    hint = _unwrap_optional(hint)
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
        return {"type": _json_value, "metavar": "JSON"}
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
    for name, param in flow.signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        option = "--" + name.replace("_", "-")
        if option in _RUNTIME_OPTIONS or option == "--help":
            raise Nb2flowError(
                f"flow {flow.name!r}: parameter {name!r} clashes with the runtime option "
                f"{option}; rename the parameter"
            )
        spec = _option_spec(hints.get(name, param.annotation), param.default)
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
        if kind_name and kind_name not in ("_json_value", "to_enum"):
            shown = f"{kind_name}, {shown}"
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
        help="print the flow's returned value as JSON on stdout",
    )
    return parser, dests
