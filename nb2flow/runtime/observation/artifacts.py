"""Artifacts: what a notebook cell would have displayed, recorded with the task run that
computed it, as ``artifact`` run events.

An artifact is a small MIME bundle (``text/plain`` always; ``text/html``, ``text/markdown``
or ``image/png`` when there is one) with a ``kind`` (``value``, ``table``, ``markdown``,
``image``) and a ``name``. Each part is size-capped here, where the task runs, so nothing big
crosses to the flow process; a part over its cap is left out (``text/plain`` is cut) and the
artifact says it was truncated. The public API is :mod:`nb2flow.artifacts`; the figures a task
leaves open are recorded by :func:`capture_figures` when each attempt ends.

The store writes the parts beside the run store (``$NB2FLOW_HOME/artifacts/``, owner-only);
the panel's Outputs tab, ``nb2flow show`` and the report show them.
"""

from __future__ import annotations

import html
import io
import sys
from collections.abc import Mapping
from typing import Any

from nb2flow.runtime.core.context import RUN

VALUE, TABLE, MARKDOWN, IMAGE = "value", "table", "markdown", "image"
KINDS = (VALUE, TABLE, MARKDOWN, IMAGE)

#: caps per part, in characters (text) or bytes (images)
MAX_TEXT = 16 * 1024
MAX_HTML = 512 * 1024
MAX_MARKDOWN = 256 * 1024
MAX_PNG = 4 * 1024 * 1024
#: rows and columns of a table kept
TABLE_ROWS, TABLE_COLS = 200, 50
#: artifacts one task run may record (the rest are dropped with a warning)
MAX_PER_RUN = 100
#: dots per inch of a captured figure
FIGURE_DPI = 100

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CAPS = {"text/html": MAX_HTML, "text/markdown": MAX_MARKDOWN, "image/png": MAX_PNG}


def _cap(bundle: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The bundle with each part within its cap (``text/plain`` cut, others dropped)."""
    truncated = False
    out: dict[str, Any] = {}
    for mime, part in bundle.items():
        if part is None:
            continue
        if mime == "text/plain":
            if len(part) > MAX_TEXT:
                part = part[: MAX_TEXT - 1] + "\u2026"
                truncated = True
        elif len(part) > _CAPS.get(mime, MAX_TEXT):
            truncated = True
            continue
        out[mime] = part
    return out, truncated


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not fail the task
        return f"<{type(obj).__qualname__}: repr failed: {type(exc).__name__}>"


def _call(obj: Any, method: str) -> Any:
    fn = getattr(type(obj), method, None)
    if fn is None:
        return None
    try:
        return fn(obj)
    except Exception:  # noqa: BLE001 - a rich repr that fails is left out, as IPython does
        return None


def _loaded(name: str) -> Any:
    """Module ``name`` if it is imported completely (another thread may be importing it right
    now), else None."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def is_figure(obj: Any) -> bool:
    figure = getattr(_loaded("matplotlib.figure"), "Figure", None)
    return figure is not None and isinstance(obj, figure)


def figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    return buf.getvalue()


def value_bundle(obj: Any) -> tuple[str, dict[str, Any]]:
    """(kind, bundle) of a displayed value: a figure is an image, anything else its text
    and the rich representations it has (``_repr_html_``, ``_repr_markdown_``,
    ``_repr_png_``), as Jupyter would show it."""
    if is_figure(obj):
        return IMAGE, image_bundle(obj)
    bundle: dict[str, Any] = {"text/plain": _safe_repr(obj)}
    rich_html = _call(obj, "_repr_html_")
    if isinstance(rich_html, str):
        bundle["text/html"] = rich_html
    md = _call(obj, "_repr_markdown_")
    if isinstance(md, str):
        bundle["text/markdown"] = md
    png = _call(obj, "_repr_png_")
    if isinstance(png, bytes) and png.startswith(_PNG_MAGIC):
        bundle["image/png"] = png
    return VALUE, bundle


def table_bundle(data: Any) -> dict[str, Any]:
    """A table from a DataFrame (anything with ``to_html``), a list of dicts (rows), a dict
    of lists (columns) or a list of lists."""
    to_html = getattr(data, "to_html", None)
    if callable(to_html):
        shape = getattr(data, "shape", None)
        text = getattr(data, "to_string", None)
        plain = (
            text(max_rows=20, max_cols=12) if callable(text) else _safe_repr(data)
        )  # pandas' own text form
        if shape is not None:
            plain += f"\n[{' x '.join(str(n) for n in shape)}]"
        return {
            "text/plain": plain,
            "text/html": to_html(max_rows=TABLE_ROWS, max_cols=TABLE_COLS, border=0),
        }
    if isinstance(data, Mapping):
        columns = [str(k) for k in data]
        cols = [list(v) for v in data.values()]
        n = max((len(c) for c in cols), default=0)
        rows = [[c[i] if i < len(c) else "" for c in cols] for i in range(n)]
    else:
        items = list(data)
        if items and all(isinstance(r, Mapping) for r in items):
            columns = []
            for r in items:
                columns += [str(k) for k in r if str(k) not in columns]
            rows = [[r.get(c, r.get(_key(r, c), "")) for c in columns] for r in items]
        else:
            rows = [list(r) if isinstance(r, (list, tuple)) else [r] for r in items]
            width = max((len(r) for r in rows), default=0)
            columns = [str(i) for i in range(width)]
    return _rows_bundle(columns, rows)


def _key(row: Mapping[Any, Any], column: str) -> Any:
    for k in row:
        if str(k) == column:
            return k
    return column


def _rows_bundle(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    shown = rows[:TABLE_ROWS]
    cols = columns[:TABLE_COLS]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r[: len(cols)]) + "</tr>"
        for r in shown
    )
    more = (
        f'<tr><td colspan="{len(cols)}">\u2026 {len(rows) - len(shown)} more rows</td></tr>'
        if len(rows) > len(shown)
        else ""
    )
    table = f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}{more}</tbody></table>'
    lines = ["\t".join(cols)] + ["\t".join(str(v) for v in r[: len(cols)]) for r in shown[:20]]
    if len(rows) > 20:
        lines.append(f"\u2026 {len(rows) - 20} more rows")
    lines.append(f"[{len(rows)} rows x {len(columns)} columns]")
    return {"text/plain": "\n".join(lines), "text/html": table}


def markdown_bundle(text: str) -> dict[str, Any]:
    return {"text/plain": str(text), "text/markdown": str(text)}


def image_bundle(image: Any) -> dict[str, Any]:
    """PNG from a matplotlib figure, PNG bytes, a PIL image or anything with ``_repr_png_``."""
    if is_figure(image):
        png = figure_png(image)
        label = image.get_label() or f"figure {getattr(image, 'number', '')}".strip()
        return {"text/plain": f"<{label}>", "image/png": png}
    if isinstance(image, (bytes, bytearray)):
        if not bytes(image[:8]) == _PNG_MAGIC:
            raise ValueError("image(): bytes given are not a PNG image")
        return {"text/plain": "<PNG image>", "image/png": bytes(image)}
    save = getattr(image, "save", None)
    if callable(save) and hasattr(image, "mode"):  # PIL.Image
        buf = io.BytesIO()
        save(buf, format="PNG")
        return {"text/plain": _safe_repr(image), "image/png": buf.getvalue()}
    png = _call(image, "_repr_png_")
    if isinstance(png, bytes) and png.startswith(_PNG_MAGIC):
        return {"text/plain": _safe_repr(image), "image/png": png}
    raise TypeError(
        f"image() takes a matplotlib figure, PNG bytes or a PIL image, not {type(image).__name__}"
    )


# ------------------------------------------------------------------------------ recording


def record(kind: str, bundle: dict[str, Any], name: str | None = None) -> bool:
    """Record an artifact for the calling run (a task run, or the flow body). Outside runs,
    show it as Jupyter would when in IPython. Returns whether it was recorded."""
    ctx = RUN.get()
    if ctx is None:
        _display_outside(bundle)
        return False
    if ctx.output is not None:  # a capturing run: its Output counts its artifacts
        from nb2flow.runtime.observation.capture import output_of

        counter = output_of(ctx)
        if counter.artifacts >= MAX_PER_RUN:
            counter.artifacts_dropped += 1
            return False
        counter.artifacts += 1
    from nb2flow.runtime.core import events

    capped, truncated = _cap(bundle)
    ctx.sink(
        events.artifact(
            ctx.flow_run_id,
            ctx.task_run_id,
            kind=kind,
            name=name or "",
            bundle=capped,
            truncated=truncated,
        )
    )
    return True


def ipython_display(*objs: Any, **options: Any) -> None:
    """What IPython's ``display(*objs)`` does, for a generated script (its ``display``
    stand-in calls it): each object is recorded as :func:`nb2flow.artifacts.display` records
    it, with the running task run, as the notebook showed it below the cell. It is printed
    where no run captures output (outside a run, or with output capture off), so a script run
    without nb2flow's record still shows it on the terminal; outside a run in IPython, IPython
    displays it. Inside ``capture_output()`` (``%%capture``) it is kept in the captured
    outputs instead. IPython's options (``display_id``, ``raw``, ``metadata``, ...) are
    ignored."""
    from nb2flow.runtime.observation.capture import HELD

    held = HELD.get()
    ctx = RUN.get()
    for obj in objs:
        if held is not None and held.keeps_display:
            held.keep(value_bundle(obj)[1])
        elif ctx is None and in_ipython():
            record(*value_bundle(obj))  # outside a run: IPython shows it
        else:
            if ctx is not None:
                record(*value_bundle(obj))
            if ctx is None or ctx.output is None:
                print(obj)


def in_ipython() -> bool:
    """True in an IPython shell or Jupyter kernel (where ``display`` shows values)."""
    ip = sys.modules.get("IPython")
    return ip is not None and ip.get_ipython() is not None


def _display_outside(bundle: dict[str, Any]) -> None:
    if not in_ipython():
        return
    from IPython.display import display

    display(bundle, raw=True)


# ------------------------------------------------------------------------------- figures


def _pyplot() -> Any:
    plt = _loaded("matplotlib.pyplot")
    return plt if hasattr(plt, "get_fignums") else None


def open_figures() -> frozenset[int] | None:
    """The numbers of the pyplot figures open now (None: pyplot is not even imported)."""
    if "matplotlib.pyplot" not in sys.modules:  # the common case: one dict lookup
        return None
    plt = _pyplot()
    if plt is None:
        return None
    try:
        return frozenset(plt.get_fignums())
    except Exception:  # noqa: BLE001 - capture must never fail the task
        return None


def capture_figures(before: frozenset[int] | None) -> None:
    """Record as images the pyplot figures opened since ``before`` and still open, then close
    them (as Jupyter's inline backend shows and closes a cell's figures). Never raises."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    plt = _pyplot()
    if plt is None:
        return
    try:
        _capture_figures(plt, before)
    except Exception:  # noqa: BLE001 - capture must never fail the task
        pass


def end_of_cell() -> None:
    """The end of a notebook cell inside a task's code (generated scripts call it after a cell
    that plots, when more cells follow in the same task): as Jupyter's inline backend does
    after each cell, the pyplot figures the cell left open are shown (recorded, when output
    capture is on, as at the end of the task) and closed, so that the next cell's ``plt.*``
    calls draw on a new figure. Figures open before the task started are left alone. Never
    raises."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    plt = _pyplot()
    if plt is None:
        return
    ctx = RUN.get()
    try:
        before = ctx.figures if ctx is not None else None
        _capture_figures(plt, before, recorded=ctx is not None and ctx.log_prints)
    except Exception:  # noqa: BLE001 - capture must never fail the task
        pass


def _capture_figures(plt: Any, before: frozenset[int] | None, recorded: bool = True) -> None:
    """Record (when ``recorded``) and close the figures opened since ``before``."""
    nums = plt.get_fignums()
    if not nums:
        return
    from matplotlib._pylab_helpers import Gcf

    for num in nums:
        if before is not None and num in before:
            continue
        manager = Gcf.figs.get(num)
        if manager is None:
            continue
        fig = manager.canvas.figure
        if not recorded:
            plt.close(fig)
            continue
        try:
            bundle = image_bundle(fig)
        except Exception as exc:  # noqa: BLE001 - a figure that cannot be drawn
            bundle = {"text/plain": f"<figure {num}: cannot be drawn: {type(exc).__name__}: {exc}>"}
        record(IMAGE, bundle, str(fig.get_label() or f"figure {num}"))
        plt.close(fig)
