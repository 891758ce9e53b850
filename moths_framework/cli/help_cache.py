"""A LightningCLI command's ``--help``, printed again from a cache without importing torch.

The help of moths-fit, moths-validate, moths-test and moths-predict is LightningCLI's
parser, built from the signatures of Lightning's ``Trainer``, our model and data module
and torch's optimizers: building it imports torch and Lightning, about 5 s of CPU. The
first ``--help`` builds it as always and keeps what it printed in
``<cache>/help/<key>.txt`` (``<cache>``: :func:`~moths_framework.user_cache.cache_root`);
a later ``--help`` under the same key prints that text, the same bytes, and exits 0
without importing either.

The key is a hash of all the text can depend on: the command and its arguments, the
working folder, the terminal width, the Python that runs, the environment variables
Lightning, jsonargparse and moths-framework read, the locale, every installed
distribution (the name, version and modification time of each ``.dist-info``, and the
``.pth`` files), the size and modification time of each file of code outside the
installed distributions that the command can load (an editable install of
moths-framework or a plugin, a module a ``class_path`` names), and each file the
arguments name (``--config``, and the files a config, a YAML or JSON file up to 64 KiB,
names in turn): its size, modification time and, up to 1 MiB, its content.

A cache folder that cannot be read or written is passed over, never an error, and
``MOTHS_NO_HELP_CACHE=1`` turns the cache off. Only a ``--help`` (``-h``) is kept,
when the command exits 0 having printed a usage text; every other command line,
``--print_config`` included, runs as it would without this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO

from moths_framework.atomic_files import write_bytes_atomically
from moths_framework.user_cache import cache_root

__all__ = ["NO_HELP_CACHE_ENV", "answer_help", "help_key"]

NO_HELP_CACHE_ENV = "MOTHS_NO_HELP_CACHE"
_HELP_FLAGS = ("-h", "--help")
_KEPT = 32  # help texts kept; older ones are removed when a new one is written
_HASHED_UP_TO = 1 << 20  # a named file larger than this is keyed by size and time alone
_CONFIG_UP_TO = 64 << 10  # a YAML or JSON file up to this size is a config: its names count
_ENV_PREFIXES = ("MOTHS_", "JSONARGPARSE_", "PL_", "LIGHTNING_", "TORCH", "PYTORCH_")
_LOCALE_ENV = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
_RECORD_SUFFIXES = (".dist-info", ".egg-info", ".egg-link", ".pth")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_PLUGIN_GROUPS = "moths_framework."


def answer_help(prog: str, args: list[str], build: Callable[[], int]) -> int:
    """``build()``'s exit code; for a ``--help`` whose key is cached, the kept text instead.

    ``build`` parses ``args`` and runs the command; a ``--help`` ends it with
    ``SystemExit(0)`` once the help is printed. What it printed then is kept under the
    key of ``prog`` and ``args``, and the next such call prints it and raises
    ``SystemExit(0)`` without calling ``build``.
    """
    if not _asks_for_help(args) or os.environ.get(NO_HELP_CACHE_ENV, "") not in ("", "0"):
        return build()
    path = _cached_path(prog, args)
    text = _read(path) if path is not None else None
    if text is not None:
        sys.stdout.write(text)
        raise SystemExit(0)
    recorder = _Recorder(sys.stdout)
    try:
        with contextlib.redirect_stdout(recorder):  # type: ignore[type-var]
            return build()
    except SystemExit as exit_:
        printed = "".join(recorder.parts)
        if path is not None and exit_.code == 0 and printed.startswith("usage:"):
            _keep(path, printed)
        raise


def help_key(prog: str, args: list[str]) -> str:
    """The hash of all that the help of ``prog args`` can depend on (see the module)."""
    named = _named_files(args)
    modules = {"moths_framework"} | _plugin_modules() | _dotted_names(args, named)
    records = {folder: _records(folder) for folder in sys.path if folder}
    sites = [folder for folder, found in records.items() if found]
    inputs: dict[str, Any] = {
        "prog": prog,
        "args": args,
        "cwd": os.getcwd(),
        "columns": shutil.get_terminal_size().columns,  # what argparse wraps to
        "python": [sys.version, sys.executable, sys.prefix, sys.path, repr(sys.flags)],
        "env": sorted(
            (k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) or k in _LOCALE_ENV
        ),
        "installed": records,
        "code": [_code_files(name, sites) for name in sorted(modules)],
        "files": [_file_key(path) for path in named],
    }
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Recorder:
    """A text stream that writes through to ``stream`` and keeps a copy of what it wrote;
    everything else (``isatty``, ``encoding``, ``fileno`` ...) is ``stream``'s."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self.parts.append(text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _asks_for_help(args: list[str]) -> bool:
    before_end = args[: args.index("--")] if "--" in args else args
    return any(arg in _HELP_FLAGS for arg in before_end)


def _cached_path(prog: str, args: list[str]) -> Path | None:
    """Where the help of ``prog args`` is kept; ``None`` when its key cannot be made."""
    try:
        return cache_root() / "help" / f"{help_key(prog, args)}.txt"
    except (OSError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _keep(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and remove all but the newest :data:`_KEPT` texts; a
    folder that cannot be written is left as it is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, text.encode("utf-8"))
        kept = sorted(path.parent.glob("*.txt"), key=lambda p: p.stat().st_mtime_ns)
        for old in kept[:-_KEPT]:
            old.unlink(missing_ok=True)
    except (OSError, UnicodeEncodeError):
        pass


def _records(folder: str) -> list[tuple[str, int]]:
    """Each distribution record and ``.pth`` file in ``folder``, with its modification time
    (an install, upgrade or reinstall makes it anew); none for a folder that is not one."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = [(e.name, e.stat().st_mtime_ns) for e in entries if e.name.endswith(_RECORD_SUFFIXES)]
    return sorted(found)


def _plugin_modules() -> set[str]:
    """The top-level modules of every installed plugin (any ``moths_framework.*`` group)."""
    groups = entry_points()
    return {
        ep.value.split(":")[0].split(".")[0]
        for group in groups.groups
        if group.startswith(_PLUGIN_GROUPS)
        for ep in groups.select(group=group)
    }


def _code_files(module: str, sites: list[str]) -> list[tuple[str, int, int]]:
    """Size and modification time of each file of top-level ``module`` when it lies
    outside the folders of installed distributions (whose records key them); none for a
    module that is not there."""
    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    places = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    found = []
    for place in places:
        if not place or not os.path.exists(place):
            continue
        if any(_is_within(place, site) for site in sites):
            continue
        for file in _walk(place):
            stat = os.stat(file)
            found.append((file, stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def _is_within(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) == (
        os.path.abspath(folder)
    )


def _walk(place: str) -> Iterator[str]:
    if os.path.isfile(place):
        yield place
        return
    for root, folders, files in os.walk(place):
        folders[:] = [f for f in folders if f != "__pycache__"]
        yield from (os.path.join(root, f) for f in files)


def _named_files(args: list[str]) -> list[Path]:
    """The files ``args`` name (``--config x.yaml``, ``--ckpt_path=y``), and the files
    a YAML or JSON one among them names, relative to where we run or to itself."""
    found: list[Path] = []
    todo = [(value, Path.cwd()) for arg in args for value in {arg, arg.partition("=")[2]}]
    while todo:
        value, base = todo.pop()
        path = _existing_file(value, base)
        if path is None or path in found:
            continue
        found.append(path)
        todo.extend((text, path.parent) for text in _strings_in_config(path))
    return found


def _existing_file(value: str, base: Path) -> Path | None:
    if not value or len(value) > 4096 or "\n" in value:
        return None
    for path in (Path(value), base / value):
        with contextlib.suppress(OSError, ValueError):
            if path.is_file():
                return path.resolve()
    return None


def _strings_in_config(path: Path) -> list[str]:
    """Every string in a YAML or JSON file of a config's size (none in another file: a
    data file, such as a COCO file, names images, not options)."""
    if path.suffix not in (".yaml", ".yml", ".json") or path.stat().st_size > _CONFIG_UP_TO:
        return []
    import yaml  # only when a config is named

    try:
        text = path.read_text(encoding="utf-8")
        tree = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return []
    strings, todo = [], [tree]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            strings.append(item)
    return strings


def _dotted_names(args: list[str], files: list[Path]) -> set[str]:
    """The top-level modules of the dotted names (``class_path`` values) in ``args`` and
    in the configs among ``files``."""
    strings = [v for arg in args for v in (arg, arg.partition("=")[2])]
    strings += [s for path in files for s in _strings_in_config(path)]
    return {s.split(".")[0] for s in strings if _DOTTED.fullmatch(s)}


def _file_key(path: Path) -> list[Any]:
    stat = path.stat()
    digest = ""
    if stat.st_size <= _HASHED_UP_TO:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return [str(path), stat.st_size, stat.st_mtime_ns, digest]
