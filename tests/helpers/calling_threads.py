"""The threads that call a method: how many decode in parallel."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest


def calling_threads(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, delay: float = 0.05
) -> set[int]:
    """Wrap ``owner.name`` so each call records its thread and takes ``delay`` seconds more
    (long enough that every idle worker gets a call); returns the set it fills."""
    real, seen = getattr(owner, name), set()

    def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.add(threading.get_ident())
        time.sleep(delay)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return seen
