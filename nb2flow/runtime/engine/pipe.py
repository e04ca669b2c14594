"""A pool worker's pipe: messages whose big values cross it once, without a copy.

:func:`send_message` writes a small head and, for a task's job or outcome, a body pickled
by :func:`~nb2flow.runtime.engine.transport.dumps`: the buffers of its big values (numpy
arrays, ...) go out from the value's own memory, and :func:`recv_message` reads them into
the memory of the value it unpickles. Neither side holds the pickled bytes and the value
together (``Connection.send``/``recv`` hold both, and a second copy inside a tuple).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from typing import Any

from nb2flow.runtime.engine.transport import OUT_OF_BAND_MIN


def send_message(
    conn: Any, head: Any, data: bytes | None = None, raws: Sequence[memoryview] = ()
) -> None:
    """Send ``head`` (small, picklable) and, if ``data`` is given, a body: a pickle from
    :func:`~nb2flow.runtime.engine.transport.dumps` and its ``raws``. A small body rides in the head's frame; a big one is
    written on the pipe after it, unframed, buffers first, so that :func:`recv_message`
    reads each buffer into its final memory and unpickles the rest as it arrives."""
    if data is not None and (raws or len(data) >= OUT_OF_BAND_MIN):
        conn.send_bytes(pickle.dumps((head, None, (len(data), [r.nbytes for r in raws]))))
        fd = conn.fileno()
        for raw in raws:
            _write_all(fd, raw)
        _write_all(fd, data)
    else:
        conn.send_bytes(pickle.dumps((head, data, None)))


def recv_message(conn: Any) -> tuple[Any, Any, BaseException | None]:
    """The next ``(head, body, error)`` from :func:`send_message`: ``body`` is None for a
    message without one; ``error`` is what unpickling the body raised (the whole message
    is read anyway: the pipe stays in step). EOFError or OSError: the pipe broke.

    A body's buffers are read into ``bytearray``s that become the unpickled object's
    memory (numpy arrays are views of them, writable); its pickle is read in frames, never
    whole: the process holds the value once."""
    head, data, sizes = pickle.loads(conn.recv_bytes())
    if sizes is None:
        if data is None:
            return head, None, None
        try:
            return head, pickle.loads(data), None
        except Exception as exc:  # noqa: BLE001 - e.g. a class this process lacks
            return head, None, exc
    size, buffer_sizes = sizes
    fd = conn.fileno()
    buffers = [_read_all(fd, bytearray(n)) for n in buffer_sizes]
    reader = _PipeReader(fd, size)
    try:
        body = pickle.load(reader, buffers=buffers)
    except Exception as exc:  # noqa: BLE001
        if reader.broken:
            raise  # the pipe's own error
        reader.drain()
        return head, None, exc
    reader.drain()
    return head, body, None


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int, buf: Any) -> Any:
    view = memoryview(buf)
    while view:
        n = os.readv(fd, [view])
        if not n:
            raise EOFError("the pipe closed in the middle of a message")
        view = view[n:]
    return buf


class _PipeReader:
    """The next ``size`` bytes of a pipe as a file for ``pickle.load``: it reads what the
    unpickler asks for (a frame, or a big bytes object straight into its memory), never
    past them."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size
        self.broken = False

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")[: self.left]
        try:
            _read_all(self.fd, view)
        except (EOFError, OSError):
            self.broken = True
            raise
        self.left -= len(view)
        return len(view)

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(self.left if n < 0 else min(n, self.left))
        self.readinto(buf)
        return bytes(buf)

    def readline(self) -> bytes:  # only the text protocols use it
        line = bytearray()
        while self.left and not line.endswith(b"\n"):
            line += self.read(1)
        return bytes(line)

    def drain(self) -> None:
        while self.left:
            self.read(1 << 16)
