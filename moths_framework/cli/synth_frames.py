"""``moths-synth-frames``: trap frames for a detector, from the moth crops you have."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moths_framework.data.sources import DataSourceError
from moths_framework.data.synth_backgrounds import BackgroundError
from moths_framework.data.synth_crops import CropError
from moths_framework.data.synth_frames import (
    COMMAND,
    SynthError,
    SynthResult,
    SynthSettings,
    synthesize_dataset,
)
from moths_framework.messages import first_few
from moths_framework.output_folders import OutputFolderError

_DEFAULTS = SynthSettings()


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 2048x1536, got {text!r}"
        ) from None
    return width, height


def _parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description=(
            "Paste moth crops (CROPS/<species>/<image>, e.g. moths-prepare's image_folder) "
            "onto photos of an empty sheet, or onto generated ones, at random scale, "
            "rotation, flip and brightness; write OUT/images/*.jpg and OUT/instances.json "
            "(COCO; each box also names its species). The same seed writes the same files."
        ),
    )
    add = parser.add_argument
    add("out", type=Path, help="output folder (a new one, or one this command wrote)")
    add("crops", type=Path, nargs="+", help="crop folders <species>/<image> or manifest.csv")
    add("--backgrounds", type=Path, help="folder of empty-sheet photos (default: generated)")
    add("--frames", type=int, default=d.frames, help="how many (default %(default)s)")
    add("--size", type=_size, default=(d.width, d.height), metavar="WxH",
        help=f"frame size in pixels (default {d.width}x{d.height})")  # fmt: skip
    add("--density", type=int, nargs=2, default=d.density, metavar=("MIN", "MAX"),
        help="moths per frame (default %(default)s)")  # fmt: skip
    add("--moth-size", type=float, nargs=2, default=d.moth_size, metavar=("MIN", "MAX"),
        help="a moth's longer side, in fractions of the frame's shorter side "
        "(default %(default)s)")  # fmt: skip
    add("--rotation", type=float, default=d.rotation,
        help="largest rotation either way, degrees (default %(default)s)")  # fmt: skip
    add("--no-flip", action="store_true", help="never mirror a crop")
    add("--brightness", type=float, nargs=2, default=d.brightness, metavar=("MIN", "MAX"),
        help="brightness factor of each crop (default %(default)s)")  # fmt: skip
    add("--max-iou", type=float, default=d.max_iou,
        help="most overlap (IoU) of two moths' boxes (default %(default)s)")  # fmt: skip
    add("--soft-edge", type=float, default=d.soft_edge,
        help="feathered rim of the elliptical cut-out, a fraction of its radius; "
        "0 pastes whole rectangles (default %(default)s)")  # fmt: skip
    add("--species-categories", action="store_true",
        help="one COCO category per species (default: one, moth)")  # fmt: skip
    add("--seed", type=int, default=d.seed, help="default %(default)s")
    add("--no-progress", action="store_true", help="no progress bar")
    return parser


def format_result(result: SynthResult, out: Path, settings: SynthSettings) -> str:
    """The lines printed after a run."""
    w = result.written
    lines = [
        f"wrote {w.frames} frames of {settings.width}x{settings.height} to {out}/ "
        f"(images/, instances.json) in {w.seconds:.1f} s",
        f"  moths  {w.moths:>7} of {len(w.species)} species, "
        f"{w.moths / max(w.frames, 1):.1f} a frame; "
        f"{w.empty} frame{'s' * (w.empty != 1)} without any",
    ]
    if result.broken_crops:
        names = first_few([str(p) for p in result.broken_crops], 3)
        lines.append(f"  passed over {len(result.broken_crops)} crops that do not decode: {names}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    opts = _parser().parse_args(args)
    settings = SynthSettings(
        frames=opts.frames,
        width=opts.size[0],
        height=opts.size[1],
        density=tuple(opts.density),
        moth_size=tuple(opts.moth_size),
        rotation=opts.rotation,
        flip=not opts.no_flip,
        brightness=tuple(opts.brightness),
        max_iou=opts.max_iou,
        soft_edge=opts.soft_edge,
        seed=opts.seed,
    )
    try:
        result = synthesize_dataset(
            opts.out,
            opts.crops,
            settings,
            backgrounds=opts.backgrounds,
            by_species=opts.species_categories,
            progress=not opts.no_progress,
        )
    except (SynthError, CropError, DataSourceError, BackgroundError, OutputFolderError) as err:
        print(f"{COMMAND}: {err}", file=sys.stderr)
        return 2
    print(format_result(result, opts.out, settings))
    return 0
