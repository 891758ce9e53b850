"""Frames to nights: each frame's deployment, local time and night.

A night runs from noon to noon, local time, and is named by the date of its
evening: a frame taken at 2024-07-02 03:10 belongs to night ``2024-07-01``, one
at 2024-07-02 12:00 to night ``2024-07-02``. No torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tqdm import tqdm

from moths_framework.nights.deployments import Deployment, Deployments
from moths_framework.nights.timestamps import NamePattern, frame_time

__all__ = ["FrameTime", "UntimedFrame", "night_of", "time_frames"]

NIGHT_STARTS = timedelta(hours=12)  # noon


@dataclass(frozen=True)
class FrameTime:
    """A frame placed in its night: deployment, local time (from ``source``: ``exif`` or
    ``name``) and the night's date."""

    path: str
    deployment: Deployment
    time: datetime  # naive local time
    source: str

    @property
    def night(self) -> date:
        """The night the frame belongs to (the date of its evening)."""
        return night_of(self.time)

    def iso_time(self) -> str:
        """The local time, ISO 8601, with its offset when the deployment's zone is known."""
        zone = self.deployment.timezone
        return (self.time.replace(tzinfo=zone) if zone else self.time).isoformat()


@dataclass(frozen=True)
class UntimedFrame:
    """A frame left out of every night, and why."""

    path: str
    reason: str


def night_of(time: datetime) -> date:
    """The night of a local time: the date of the noon at or before it."""
    return (time - NIGHT_STARTS).date()


def time_frames(
    paths: Sequence[str],
    deployments: Deployments,
    names: NamePattern,
    progress: bool = False,
) -> tuple[dict[str, FrameTime], list[UntimedFrame]]:
    """Each frame's place in its night, and the frames that have none.

    Args:
        paths: the frames (each read once, whatever its repeats).
        deployments: finds each frame's deployment.
        names: the time pattern of file names (used when a frame has no EXIF time).
        progress: show a progress bar (reading EXIF is one file open per frame).
    """
    timed: dict[str, FrameTime] = {}
    untimed: list[UntimedFrame] = []
    unique = list(dict.fromkeys(paths))
    bar = tqdm(unique, unit="frame", desc="times", file=sys.stderr, disable=not progress)
    for path in bar:
        deployment = deployments.of(path)
        if deployment is None:
            untimed.append(UntimedFrame(path, "in no deployment of deployments.csv"))
            continue
        taken, source = frame_time(path, names)
        if taken is None:
            untimed.append(UntimedFrame(path, source))
        else:
            timed[path] = FrameTime(path, deployment, taken, source)
    return timed, untimed
