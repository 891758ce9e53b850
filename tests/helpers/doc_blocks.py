"""The fenced blocks of README.md and docs/**/*.md: their commands, their code and the
output the documents show after them.

A ``console`` or ``sh`` block whose lines start with ``$ `` is a session: each
``$ `` line is a command (a line ending in ``\\`` goes on to the next line), and
the lines after it, up to the next command, are the output the document shows
for it. A block without ``$ `` is a list of commands, one a line, with no shown
output. A ``python`` block is code; a comment with ``-> TEXT`` on one of its lines
(``# -> TEXT``, or ``# what it is -> TEXT``) shows what the statement on that line
prints, or its value when it is an expression.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers.paths import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
COMMAND_LANGS = ("console", "sh")
SHOWN = re.compile(r"#[^#]*?->\s?(.*)$")  # a python comment that shows output


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the 1-based line of its first content line."""

    doc: str
    lang: str
    line: int
    lines: tuple[str, ...]

    @property
    def end(self) -> int:
        """The line of the closing fence."""
        return self.line + len(self.lines)


@dataclass(frozen=True)
class Shown:
    """A line of output as a document shows it, and where."""

    doc: str
    line: int
    text: str


@dataclass(frozen=True)
class Command:
    """A documented command: ``key`` is its words re-joined (what rules match),
    ``raw`` the text as written (continuations joined), for a shell."""

    block: Block
    line: int
    key: str
    raw: str
    shown: tuple[Shown, ...]


def documents() -> list[Path]:
    """The documents whose blocks run, in reading order: README.md, then the pages in the
    order of mkdocs.yml's navigation, then any other page under docs/, sorted."""
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = [DOCS / page for page in _nav_pages(site["nav"])]
    rest = sorted(set(DOCS.rglob("*.md")) - set(nav))
    return [README, *(page for page in nav if page.is_file()), *rest]


def _nav_pages(entry: object) -> list[str]:
    """The ``.md`` pages of a mkdocs ``nav`` entry, in order."""
    if isinstance(entry, str):
        return [entry] if entry.endswith(".md") else []
    if isinstance(entry, dict):
        entry = list(entry.values())
    return [page for item in entry for page in _nav_pages(item)] if isinstance(entry, list) else []


def doc_name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one document, in order."""
    found, lang, start, body = [], None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```") and lang is None:
            lang, start, body = line[3:].strip(), n + 1, []
        elif line.startswith("```"):
            found.append(Block(doc_name(path), lang, start, tuple(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a ``console`` or ``sh`` block, each with its shown output."""
    session = any(line.startswith("$ ") for line in block.lines)
    found: list[Command] = []
    raw, first, shown = "", 0, []
    rows = list(enumerate(block.lines, start=block.line))
    i = 0
    while i < len(rows):
        n, line = rows[i]
        if session and not line.startswith("$ "):
            if found or raw:
                shown.append(Shown(block.doc, n, line))
            i += 1
            continue
        _flush(found, block, first, raw, shown)
        raw, first, shown = (line[2:] if session else line).strip(), n, []
        while raw.endswith("\\") and i + 1 < len(rows):
            i += 1
            raw = raw[:-1].rstrip() + " " + rows[i][1].strip()
        i += 1
    _flush(found, block, first, raw, shown)
    return found


def _flush(found: list[Command], block: Block, line: int, raw: str, shown: list) -> None:
    words = shlex.split(raw, comments=True) if raw else []
    if words:
        found.append(Command(block, line, shlex.join(words), raw, tuple(shown)))
    elif found and shown:  # output after a comment-only line belongs to the command before
        last = found.pop()
        found.append(Command(last.block, last.line, last.key, last.raw, last.shown + tuple(shown)))


def documented_commands(langs: tuple[str, ...] = COMMAND_LANGS) -> list[Command]:
    """Every command of every ``console`` and ``sh`` block, in document order."""
    return [
        command
        for path in documents()
        for block in blocks(path)
        if block.lang in langs
        for command in commands(block)
    ]


def python_blocks() -> list[Block]:
    """Every ``python`` block, in document order."""
    return [block for path in documents() for block in blocks(path) if block.lang == "python"]


def python_shown(block: Block) -> list[Shown]:
    """The ``# -> TEXT`` comments of a python block."""
    return [
        Shown(block.doc, n, match.group(1).rstrip())
        for n, line in enumerate(block.lines, start=block.line)
        if (match := SHOWN.search(line))
    ]


def prose_around(block: Block) -> str:
    """The text between the block and the fenced blocks or headings on either side:
    where a document says how the tests run its commands."""
    lines = (REPO / block.doc).read_text(encoding="utf-8").splitlines()
    opening, closing = block.line - 2, block.end - 1  # 0-based lines of the fences
    start, end = opening, closing + 1
    while start > 0 and not lines[start - 1].startswith(("```", "#")):
        start -= 1
    while end < len(lines) and not lines[end].startswith(("```", "#")):
        end += 1
    return "\n".join(lines[start:opening] + lines[closing + 1 : end])
