"""Does a command print what its document shows?

The shown lines must appear in the real output in order, as a subsequence
(other real lines may come between them). Each shown line must match a whole
real line, where:

- ``...`` stands for any text (a shown line that is only ``...`` stands for any
  lines, none included);
- a run of spaces stands for any run of spaces (table columns widen with their
  numbers);
- a placeholder such as ``<time>`` stands for what the caller says it may be;
- numbers follow the ``numbers`` mode: ``exact`` (as shown), ``measured``
  (counts exact; decimals, timings such as ``36s``, ``2.5 s`` or a progress bar's
  ``00:41``, rates such as ``124 images/s`` and a run folder's time stamp
  ``20261124-161502`` match any of their kind) or ``any`` (every number any number).

Blank shown lines are layout and match nothing. Real output is read as lines
split at newlines and carriage returns (progress bars), colour codes removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from helpers.doc_blocks import Shown

NUMBERS = ("exact", "measured", "any")
_NUMBER = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_CLOCK = r"\d{8}-\d{6}|\d+:\d\d(?::\d\d)?"  # a run folder's time stamp, a progress bar's time
_TOKEN = re.compile(
    rf"(?P<dots>\.\.\.)|(?P<space>\s+)|(?P<clock>{_CLOCK})|(?P<number>{_NUMBER})|(?P<other>.)"
)
_TIMING = re.compile(r" ?(?:s|ms|img/s|images/s|it/s)(?![A-Za-z])")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def real_lines(output: str) -> list[str]:
    """The lines of a command's output, as a terminal would leave them to read."""
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", _ANSI.sub("", output))]


def pattern(text: str, numbers: str = "exact", placeholders: Mapping[str, str] = {}) -> str:
    """The regular expression a real line must match in full to match the shown ``text``."""
    if numbers not in NUMBERS:
        raise ValueError(f"numbers must be one of {NUMBERS}, not {numbers!r}")
    names = "|".join(map(re.escape, placeholders))
    tokens = re.compile(f"(?P<name>{names})|{_TOKEN.pattern}" if names else _TOKEN.pattern)
    parts = []
    for match in tokens.finditer(text.rstrip()):
        kind, token = match.lastgroup, match.group()
        if kind == "name":
            parts.append(f"(?:{placeholders[token]})")
        elif kind == "dots":
            parts.append(".*?")
        elif kind == "space":
            parts.append(r"\s+")
        elif kind == "clock" and numbers != "exact":
            parts.append(f"(?:{_CLOCK})")
        elif kind == "number" and _tolerant(token, text, match.end(), numbers):
            parts.append(_NUMBER)
        else:
            parts.append(re.escape(token))
    return "".join(parts)


def _tolerant(number: str, text: str, end: int, numbers: str) -> bool:
    if numbers == "any":
        return True
    measured = "." in number or "e" in number.lower() or _TIMING.match(text, end)
    return numbers == "measured" and bool(measured)


def unmatched(
    shown: list[Shown],
    output: str,
    numbers: str = "exact",
    placeholders: Mapping[str, str] = {},
) -> str:
    """``""`` when every shown line matches, in order; else a diff-like report naming
    each shown line's document and line, then the real output."""
    lines = real_lines(output)
    report, missed, at = [], False, 0
    for line in shown:
        if line.text.strip() in ("", "..."):
            continue
        regex = re.compile(pattern(line.text, numbers, placeholders))
        found = next((i for i in range(at, len(lines)) if regex.fullmatch(lines[i])), None)
        mark = "  " if found is not None else "- "
        report.append(f"{mark}{line.doc}:{line.line}: {line.text}")
        if found is None:
            missed = True
        else:
            at = found + 1
    if not missed:
        return ""
    real = "\n".join(f"+ {line}" for line in lines if line)
    return (
        f"shown output (numbers: {numbers}) not printed as shown; '- ' lines never matched,"
        f" in order:\n" + "\n".join(report) + f"\nreal output:\n{real}"
    )
