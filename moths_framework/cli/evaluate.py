"""``moths-evaluate``: metrics and a report from a prediction folder, a classifier's or a
detector's. Imports no torch."""

from __future__ import annotations

import argparse
import sys
import time

from moths_framework.evaluate.detection_folder import (
    DetectionFolderError,
    is_detection_folder,
    read_detection_folder,
)
from moths_framework.evaluate.folder_reader import PredictionFolder, PredictionFolderError
from moths_framework.output_folders import OutputFolderError

_PROG = "moths-evaluate"
_CLASSES_PRINTED = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Evaluate a folder written by moths-predict: metrics.json, confusion/<rank>.csv "
            "and report.html (a detector's folder: metrics.json, counts.csv and report.html). "
            "With two folders, compare B against A on their shared images or frames."
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


def _evaluate_detection(folder_path: str, output: str | None, report: bool) -> str:
    from moths_framework.evaluate.detection_evaluation import evaluate_detection_folder
    from moths_framework.evaluate.detection_outputs import write_detection_evaluation

    started = time.perf_counter()
    evaluation = evaluate_detection_folder(read_detection_folder(folder_path))
    written = write_detection_evaluation(evaluation, output or folder_path, report=report)
    coco, threshold = evaluation.coco, evaluation.folder.score_threshold
    lines = [
        f"{evaluation.frames} frames, {evaluation.errors} unreadable (left out)",
        f"mAP@0.5 {coco.map50:.4f}  mAP@[.5:.95] {coco.map:.4f}",
        f"at score >= {threshold:g}: precision {evaluation.precision:.4f}  recall "
        f"{evaluation.recall:.4f} ({evaluation.kept_boxes} boxes kept, "
        f"{evaluation.true_boxes} true, {evaluation.hits} hits at IoU 0.5)",
        f"count per frame: mean absolute error {evaluation.count_mae:.3f}, "
        f"mean error {evaluation.count_bias:+.3f} (predicted - true)",
    ]
    if len(evaluation.classes) > 1:
        lines.append(
            f"{'class':<24}{'true':>6}{'kept':>6}{'precision':>11}{'recall':>8}{'AP@0.5':>8}"
        )
        for c in evaluation.classes[:_CLASSES_PRINTED]:
            lines.append(
                f"{c.name[:23]:<24}{c.true_boxes:>6}{c.kept_boxes:>6}{c.precision:>11.4f}"
                f"{c.recall:>8.4f}{c.ap50:>8.4f}"
            )
        if len(evaluation.classes) > _CLASSES_PRINTED:
            lines.append(f"... {len(evaluation.classes) - _CLASSES_PRINTED} more in metrics.json")
    lines.append(f"wrote {written} ({time.perf_counter() - started:.1f} s)")
    return "\n".join(lines)


def _compare(first: str, second: str) -> str:
    """B against A: two classifier folders, or two detection folders; not one of each."""
    detection = [is_detection_folder(first), is_detection_folder(second)]
    if all(detection):
        from moths_framework.evaluate.detection_compare import (
            compare_detection_folders,
            format_detection_comparison,
        )

        folders = read_detection_folder(first), read_detection_folder(second)
        return format_detection_comparison(compare_detection_folders(*folders))
    if any(detection):
        which, other = (first, second) if detection[0] else (second, first)
        raise PredictionFolderError(
            f"{which} is a detector's prediction folder and {other} a classifier's: "
            "compare two folders of the same kind"
        )
    return _compare_classifiers(first, second)


def _compare_classifiers(first: str, second: str) -> str:
    from moths_framework.evaluate.compare import compare_folders, format_comparison

    comparison = compare_folders(PredictionFolder.load(first), PredictionFolder.load(second))
    return format_comparison(comparison)


def main(args: list[str] | None = None) -> int:
    """Run ``moths-evaluate``.

    Returns:
        0 on success, 2 on a usage error (missing or unreadable folder, more than
        two folders, folders that share no image, a detection folder and a
        classifier's to compare, a file in the way that moths-evaluate did not write).
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
        elif is_detection_folder(opts.folders[0]):
            print(_evaluate_detection(opts.folders[0], opts.output, not opts.no_report))
        else:
            print(_evaluate(opts.folders[0], opts.output, not opts.no_report))
    except (PredictionFolderError, DetectionFolderError, OutputFolderError, OSError) as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
