"""The pieces both reports are built of: one style, tables, inlined images, number formats.

A report is one self-contained page: figures are inlined as base64 PNG, nothing
is fetched from the network. No torch.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

__all__ = ["STYLE", "escape", "image", "number", "page", "percent", "table"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em;
       max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.name, th.name { text-align: left; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
details { margin: 0.5em 0 1em; } summary { cursor: pointer; font-weight: bold; }
"""


def page(title: str, body: str) -> str:
    """A whole HTML page with :data:`STYLE`; ``title`` is escaped, ``body`` is HTML."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    names: int = 1,
    title: str | None = None,
    last_is_name: bool = False,
) -> str:
    """An HTML table; the first ``names`` columns (and optionally the last) align left.

    Header cells are escaped; row cells are HTML already (escape text with :func:`escape`).
    """

    def cell(tag: str, i: int, value: object, width: int) -> str:
        left = i < names or (last_is_name and i == width - 1)
        return f"<{tag}{' class=name' if left else ''}>{value}</{tag}>"

    width = len(header)
    head = "".join(cell("th", i, escape(h), width) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v, width) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    caption = f"<h3>{escape(title)}</h3>" if title else ""
    return f"{caption}<table><tr>{head}</tr>{body}</table>"


def image(png: bytes, alt: str) -> str:
    """A PNG inlined as a ``data:`` URI, in its own paragraph."""
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></p>'


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def number(value: float) -> str:
    """Three decimals; ``–`` for NaN."""
    return "–" if value != value else f"{value:.3f}"  # NaN != NaN


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"
