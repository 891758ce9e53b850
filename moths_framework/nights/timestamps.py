"""When a trap frame was taken: its EXIF ``DateTimeOriginal``, else a date in its file name.

A camera trap writes the local time it took the photo into ``DateTimeOriginal``
(``2024:07:01 23:15:02``); frames that lost their EXIF (copied through a tool that
drops it, or PNGs) usually keep the time in their name, as AMI's traps do
(``20240701231502-00-07.jpg``). :func:`frame_time` tries the EXIF first, then a
``strftime``-style pattern found anywhere in the file name (default AMI's
``%Y%m%d%H%M%S``). A frame with neither has no time: it is reported, never guessed
from its file's modification time or its neighbours. Times are naive local times,
as the camera wrote them. No torch.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

__all__ = [
    "DEFAULT_NAME_PATTERN",
    "NamePattern",
    "exif_time",
    "frame_time",
]

DEFAULT_NAME_PATTERN = "%Y%m%d%H%M%S"
_EXIF_TAGS = ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime")
# strftime directives a file-name pattern may use, as the digits they match
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}",
    "M": r"\d{2}", "S": r"\d{2}", "j": r"\d{3}", "f": r"\d{1,6}",
}  # fmt: skip


class NamePattern:
    """A ``strftime`` pattern (``%Y%m%d%H%M%S``, ``IMG_%Y-%m-%d_%H%M``) searched for anywhere
    in a file name.

    Raises:
        ValueError: a directive other than ``%Y %y %m %d %H %M %S %j %f %%``, or a pattern
            without ``%d`` or ``%j`` (a time needs its day).
    """

    def __init__(self, pattern: str = DEFAULT_NAME_PATTERN) -> None:
        self.pattern = pattern
        parts, position = [], 0
        for found in re.finditer(r"%(.)", pattern):
            parts.append(re.escape(pattern[position : found.start()]))
            code = found.group(1)
            if code == "%":
                parts.append("%")
            elif code in _DIRECTIVES:
                parts.append(_DIRECTIVES[code])
            else:
                known = " ".join(f"%{c}" for c in _DIRECTIVES)
                raise ValueError(f"time pattern {pattern!r}: %{code} is not one of {known} %%")
            position = found.end()
        parts.append(re.escape(pattern[position:]))
        if "%d" not in pattern and "%j" not in pattern:
            raise ValueError(f"time pattern {pattern!r} has no day (%d or %j)")
        # a lookahead finds every start, so '120240701...' still finds '20240701...'
        self._search = re.compile(f"(?=({''.join(parts)}))")

    def time_in(self, name: str) -> datetime | None:
        """The first valid time the pattern finds in ``name`` (``None``: none)."""
        for found in self._search.finditer(name):
            try:
                return datetime.strptime(found.group(1), self.pattern)
            except ValueError:  # digits that are no date (month 13): look further on
                continue
        return None


def exif_time(path: str | os.PathLike) -> datetime | None:
    """``DateTimeOriginal`` (else ``DateTimeDigitized``, else ``DateTime``) of an image
    file, as a naive local time; ``None`` when it has none or cannot be read."""
    import exifread  # the track extra; imported here so a name-only run never needs it

    try:
        with open(path, "rb") as file:
            tags = exifread.process_file(file, details=False)
    except Exception:  # exifread raises many kinds on odd files; no time, not a crash
        return None
    for tag in _EXIF_TAGS:
        if tag in tags:
            value = str(tags[tag].values).strip().rstrip("\x00")
            try:
                return datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S")
            except ValueError:  # '0000:00:00 00:00:00' from a camera without a clock
                continue
    return None


def frame_time(path: str | os.PathLike, names: NamePattern) -> tuple[datetime | None, str]:
    """When ``path`` was taken and where that came from: ``(time, "exif")``,
    ``(time, "name")``, or ``(None, why not)``."""
    path = Path(path)
    taken = exif_time(path) if path.is_file() else None
    if taken is not None:
        return taken, "exif"
    taken = names.time_in(path.name)
    if taken is not None:
        return taken, "name"
    where = "no EXIF DateTimeOriginal" if path.is_file() else "frame file not found"
    return None, f"{where}, and no {names.pattern} in its name"
