"""How long to wait before trying Antenna again: doubling delays with jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first`` seconds, doubling, at most ``longest``.

    Each delay is drawn from its upper half (jitter), so many workers that lost
    Antenna at the same moment do not come back at the same moment.
    """

    first: float = 1.0
    longest: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0).

        A server's ``Retry-After`` is honoured, up to ``longest``.
        """
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.longest)
        ceiling = min(self.first * 2 ** min(attempt, 30), self.longest)
        return random.uniform(ceiling / 2, ceiling)
