"""``moths-evaluate``: metrics and a report from a prediction folder. Imports no torch."""

from __future__ import annotations

import argparse
import sys
import time

from moths_framework.evaluate.folder_reader import PredictionFolder, PredictionFolderError
from moths_framework.output_folders import OutputFolderError

_PROG = "moths-evaluate"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Evaluate a folder written by moths-predict: metrics.json, confusion/<rank>.csv "
            "and report.html. With two folders, compare B against A on their shared images."
        ),
    )
    parser.add_argument("folders", nargs="+", metavar="PRED_DIR", help="one folder, or A B")
    parser.add_argument(
        "--output", metavar="DIR", help="where to write (default: the prediction folder)"
    )
    parser.add_argument(
        "--no-report", action="store_true", help="metrics and matrices only, no report.html"
    )
    return parser


def _evaluate(folder_path: str, output: str | None, report: bool) -> str:
    from moths_framework.evaluate.evaluation import evaluate_folder
    from moths_framework.evaluate.outputs import write_evaluation

    started = time.perf_counter()
    evaluation = evaluate_folder(PredictionFolder.load(folder_path))
    written = write_evaluation(evaluation, output or folder_path, report=report)
    lines = [
        f"{evaluation.images} images, {evaluation.errors} unreadable (left out)",
        f"{'rank':<10}{'classes':>8}{'accuracy':>10}{'top-5':>8}{'F1 macro':>10}{'ECE':>8}",
    ]
    for rank, m in evaluation.ranks.items():
        ece = evaluation.reliability[rank].ece
        lines.append(
            f"{rank:<10}{len(m.class_names):>8}{m.accuracy:>10.4f}{m.top5_accuracy:>8.4f}"
            f"{m.f1_macro:>10.4f}{ece:>8.4f}"
        )
    if evaluation.novelty is not None:
        novelty = evaluation.novelty
        text = novelty.note
        if novelty.auroc is not None:
            text = (
                f"AUROC {novelty.auroc:.4f} ({novelty.unseen} images of "
                f"{len(novelty.unseen_species)} species never seen, {novelty.seen} of trained ones)"
            )
        lines.append(f"novelty: {text}")
    lines.append(f"wrote {written} ({time.perf_counter() - started:.1f} s)")
    return "\n".join(lines)


def _compare(first: str, second: str) -> str:
    from moths_framework.evaluate.compare import compare_folders, format_comparison

    comparison = compare_folders(PredictionFolder.load(first), PredictionFolder.load(second))
    return format_comparison(comparison)


def main(args: list[str] | None = None) -> int:
    """Run ``moths-evaluate``.

    Returns:
        0 on success, 2 on a usage error (missing or unreadable folder, more than
        two folders, folders that share no image, a file in the way that
        moths-evaluate did not write).
    """
    opts = _parser().parse_args(args)
    try:
        if len(opts.folders) > 2:
            raise PredictionFolderError(
                f"expected one prediction folder, or two to compare; got {len(opts.folders)}"
            )
        if len(opts.folders) == 2:
            if opts.output or opts.no_report:
                raise PredictionFolderError("--output and --no-report apply to one folder")
            print(_compare(*opts.folders))
        else:
            print(_evaluate(opts.folders[0], opts.output, not opts.no_report))
    except (PredictionFolderError, OutputFolderError, OSError) as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
