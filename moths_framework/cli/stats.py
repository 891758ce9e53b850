"""``moths-stats``: pixel mean and std of a data source, ready for ``model.preprocessing``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moths_framework.data.sources import DataSourceError, ImageFolder, Manifest
from moths_framework.data.stats import PixelStats, pixel_stats
from moths_framework.preprocessing import Preprocessing

_PROG = "moths-stats"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Per-channel mean and std (0-1 scale) over all pixels of the images, after the "
            "evaluation resize and centre crop. Prints a model.preprocessing block to paste."
        ),
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="an image folder <species>/<img>, or a .csv manifest",
    )
    parser.add_argument(
        "--config",
        metavar="YAML",
        help="a moths-fit config: its model.preprocessing gives the size and resize rule",
    )
    parser.add_argument(
        "--input-size", type=int, nargs="+", metavar="PX", help="model input: H [W] (default 224)"
    )
    parser.add_argument("--crop-pct", type=float, help="centre-crop fraction (default 0.875)")
    parser.add_argument("--interpolation", help="resize filter (default bilinear)")
    parser.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _preprocessing(opts: argparse.Namespace) -> Preprocessing:
    """The config's ``model.preprocessing`` (or the defaults), then the command-line options."""
    settings: dict = {}
    if opts.config:
        settings = _config_preprocessing(Path(opts.config))
    if opts.input_size:
        if len(opts.input_size) > 2:
            raise ValueError("--input-size takes one or two numbers: H [W]")
        settings["input_size"] = (opts.input_size * 2)[:2]
    if opts.crop_pct is not None:
        settings["crop_pct"] = opts.crop_pct
    if opts.interpolation:
        settings["interpolation"] = opts.interpolation
    keep = {"input_size", "crop_pct", "interpolation"}
    return Preprocessing(**{k: v for k, v in settings.items() if k in keep})


def _config_preprocessing(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        raise ValueError("--config needs PyYAML: pip install 'moths-framework[train]'") from None
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--config {path}: cannot read it ({error})") from None
    settings = (
        (config.get("model") or {}).get("preprocessing") if isinstance(config, dict) else None
    )
    if not isinstance(settings, dict):
        raise ValueError(
            f"--config {path}: no model.preprocessing (the backbone's default applies there); "
            "give --input-size, --crop-pct and --interpolation instead"
        )
    return dict(settings)


def _paths(sources: list[str]) -> list[Path]:
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_file() and path.suffix.lower() == ".csv":
            paths += [s.path for s in Manifest(path).samples()]
        elif path.is_dir():
            paths += [s.path for s in ImageFolder(path).samples()]
        else:
            raise DataSourceError(f"{source}: not an image folder nor a .csv manifest")
    if not paths:
        raise DataSourceError(f"no images in {' '.join(sources)} (expected <species>/<image>)")
    return paths


def _report(stats: PixelStats, p: Preprocessing) -> str:
    height, width = p.input_size
    lines = [
        f"{stats.images} images ({len(stats.failed)} unreadable, skipped), "
        f"{stats.pixels // stats.images} pixels each: shorter side resized to "
        f"{p.resize_size} ({p.interpolation}), centre crop {height}x{width}",
    ]
    lines += [f"  unreadable: {path} ({reason})" for path, reason in stats.failed[:10]]
    lines += [
        "# paste into the moths-fit config:",
        "model:",
        "  preprocessing:",
        f"    input_size: [{height}, {width}]",
        f"    crop_pct: {p.crop_pct}",
        f"    interpolation: {p.interpolation}",
        f"    mean: [{', '.join(f'{m:.6f}' for m in stats.mean)}]",
        f"    std: [{', '.join(f'{s:.6f}' for s in stats.std)}]",
    ]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Run ``moths-stats``. Returns 0, or 2 on a usage error (bad source, option or config)."""
    opts = _parser().parse_args(args)
    try:
        preprocessing = _preprocessing(opts)
        paths = _paths(opts.sources)
        stats = pixel_stats(paths, preprocessing, opts.workers, progress=not opts.no_progress)
    except (ValueError, OSError) as error:  # DataSourceError is a ValueError
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    print(_report(stats, preprocessing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
