"""Run an installed console script's ``main`` in this process, as if it were a fresh one,
and keep what it prints.

A fresh process starts with no logging handlers (so a command's
``logging.basicConfig`` takes effect) and prints stdout and stderr to one
terminal in the order written; under pytest neither holds. Here, for the
length of the call, the root logger's handlers are set aside, every plain
``StreamHandler`` and both ``sys`` streams write to one file, and file
descriptors 1 and 2 point at it too (what C code and child processes print).
Afterwards the logging setup is put back as it was.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points


def run_console_script(name: str, args: list[str]) -> tuple[int, str]:
    """Call the ``main`` of an installed console script: its exit code and what it printed."""
    (script,) = entry_points(group="console_scripts", name=name) or [None]
    assert script is not None, f"{name} is not an installed console script"
    main = script.load()
    with _fresh_logging(), _merged_output() as output:
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code
    return (code if isinstance(code, int) else int(bool(code))), output.getvalue()


@contextlib.contextmanager
def _fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    known = logging.Logger.manager.loggerDict.values()
    levels = {lg: lg.level for lg in known if isinstance(lg, logging.Logger)}
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for lg, was in levels.items():
            lg.setLevel(was)


@contextlib.contextmanager
def _merged_output() -> Iterator[io.StringIO]:
    result = io.StringIO()
    with tempfile.TemporaryFile() as file:
        stream = io.TextIOWrapper(
            io.FileIO(os.dup(file.fileno()), "w"), encoding="utf-8", errors="replace",
            line_buffering=True, write_through=True,
        )  # fmt: skip
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        streams = sys.stdout, sys.stderr
        plain = _plain_stream_handlers()
        for fd in saved:
            os.dup2(file.fileno(), fd)
        sys.stdout = sys.stderr = stream
        for handler in plain:
            handler.setStream(stream)
        try:
            yield result
        finally:
            stream.flush()
            for handler, was in plain.items():
                handler.setStream(was)
            for handler in _plain_stream_handlers():
                if handler.stream is stream:  # made during the command (a library imported
                    handler.stream = streams[1]  # then, e.g. huggingface_hub): not left closed
            sys.stdout, sys.stderr = streams
            for fd, was in saved.items():
                os.dup2(was, fd)
                os.close(was)
            stream.close()
            file.seek(0)
            result.write(file.read().decode("utf-8", errors="replace"))


def _plain_stream_handlers() -> dict[logging.StreamHandler, object]:
    """Every plain ``StreamHandler`` (not a file's, not pytest's) and the stream it has."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return {
        handler: handler.stream
        for logger in loggers
        for handler in getattr(logger, "handlers", [])
        if type(handler) is logging.StreamHandler
    }
