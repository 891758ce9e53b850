"""A page opened in a real headless chromium (Playwright), and what a reader would see wrong:
console errors, images that do not decode, a blank page."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from typing import Any

# The distribution's chromium: CI reaches PyPI and Debian's mirrors, not Playwright's browsers.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Each <img>: its source and, once decoded, its natural width (0 or false: not decoded).
_IMAGES = "() => [...document.images].map(i => [i.src.slice(0, 80), i.complete && i.naturalWidth])"
_OFF_THIS_MACHINE = re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/])[a-z]+://(?!/)")


def find_chromium() -> str | None:
    """The first of ``CHROMIUM_NAMES`` on PATH, or ``None``."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@dataclass
class RenderedPage:
    """One page after its ``load`` event."""

    errors: list[str] = field(default_factory=list)  # console errors, script errors, failed loads
    images: int = 0
    broken_images: list[str] = field(default_factory=list)  # src of each undecoded <img>
    text: str = ""  # the body's visible text
    height: float = 0.0  # the body's height in CSS pixels
    screenshot: bytes = b""  # PNG of the viewport, when asked for

    def problems(self) -> list[str]:
        """What is wrong with the page, empty when a reader sees it whole."""
        found = [f"error: {e}" for e in self.errors]
        found += [f"image not decoded: {src}" for src in self.broken_images]
        if not self.text.strip():
            found.append("no visible text")
        if self.height <= 0:
            found.append("body has no height")
        return found


def render(browser: Any, url: str, screenshot: bool = False) -> RenderedPage:
    """Open ``url`` in a new page of a Playwright ``browser``; a 1200x1600 viewport.

    Offline: a request to anywhere but this machine fails and is reported, so a page
    that needs the internet (a web font, a script from a CDN) shows it.
    """
    page = browser.new_page(viewport={"width": 1200, "height": 1600})
    page.route(_OFF_THIS_MACHINE, lambda route: route.abort("internetdisconnected"))
    seen = RenderedPage()
    page.on("console", lambda m: m.type == "error" and seen.errors.append(m.text))
    page.on("pageerror", lambda e: seen.errors.append(f"script: {e}"))
    page.on("requestfailed", lambda r: seen.errors.append(f"{r.url[:120]}: {r.failure}"))
    try:
        page.goto(url, wait_until="load")
        images = page.evaluate(_IMAGES)
        seen.images = len(images)
        seen.broken_images = [src for src, width in images if not width]
        seen.text = page.inner_text("body")
        seen.height = page.evaluate("() => document.body.getBoundingClientRect().height")
        seen.screenshot = page.screenshot() if screenshot else b""
    finally:
        page.close()
    return seen
