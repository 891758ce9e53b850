"""From a checkpoint to a calibrated checkpoint: the model's outputs on the calibration
images, the calibration itself (:mod:`.calibration`), and the new checkpoint file."""

from __future__ import annotations

import copy
import io
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moths_framework.atomic_files import write_bytes_atomically
from moths_framework.calibrate.calibration import Calibration, CalibrationError, ModelOutputs
from moths_framework.calibrate.tau import tau_normalise
from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table
from moths_framework.data.split import SPLIT_CSV
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.checkpoint import CHECKPOINT_KEY, checkpoint_meta
from moths_framework.model.predict import gather_outputs
from moths_framework.model.trust import lightning_load_options

__all__ = [
    "check_run_split",
    "format_report",
    "predict_outputs",
    "species_head",
    "training_counts",
    "write_calibrated_checkpoint",
]


def predict_outputs(trainer: Any, model: Any, data: Any, phase: str, ckpt: Path) -> ModelOutputs:
    """The model's outputs on one phase of the data module (``val``, ``test``, ``all``);
    images that could not be read are left out."""
    data.predict_phase = phase
    indices = data.predict_indices()
    load = lightning_load_options(trainer.predict)
    batches = []
    if indices:
        batches = trainer.predict(model, datamodule=data, ckpt_path=str(ckpt), **load)
    gathered = gather_outputs(
        batches or [], len(indices), model.hierarchy.num_classes(), model.backbone.num_features
    )
    ok = np.array([e is None for e in gathered.errors], dtype=bool)
    for array in (*gathered.logits.values(), gathered.features):
        ok &= np.isfinite(array).all(axis=1)
    targets = np.array([data.targets[i] for i in indices], dtype=np.int64).reshape(len(indices), -1)
    return ModelOutputs(
        logits={r: v[ok] for r, v in gathered.logits.items()},
        targets={r: targets[ok, i] for i, r in enumerate(model.hierarchy.ranks)},
        features=gathered.features[ok],
        species=np.array([data.samples[i].species for i in indices], dtype=str)[ok],
    )


def check_run_split(run_dir: Path, data: Any) -> None:
    """Make sure the data module's validation and test images were not trained on.

    The data module re-draws the run's split from its seed; the run's ``split.csv``
    says which images it trained on, so a data source that changed since then
    cannot put a training image among the calibration images unnoticed.

    Raises:
        CalibrationError: no ``split.csv`` in ``run_dir``, or a validation/test
            image that the run trained on.
    """
    path = run_dir / SPLIT_CSV
    dedicated = "pass --data.source with a dedicated calibration set instead"
    if not path.is_file():
        raise CalibrationError(
            f"{path} not found: calibrating on the run's validation images needs the split "
            f"the run recorded, to be sure none was trained on; {dedicated}"
        )
    trained = {row["path"] for row in _split_rows(path) if row["phase"] == "train"}
    data.setup("predict")  # draws the split (the trainer's later setup keeps it)
    held_out = [*data.split.val, *data.split.test]
    leaked = [str(data.samples[i].path) for i in held_out if str(data.samples[i].path) in trained]
    if leaked:
        raise CalibrationError(
            f"{len(leaked)} validation/test images were training images of the run "
            f"(by {path}; first {leaked[0]}): the data changed since training; {dedicated}"
        )


def _split_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a run's ``split.csv``; CalibrationError if it is not one."""
    what = "a split.csv written by moths-fit"
    with csv_table(path, ("path", "species", "phase"), what, CalibrationError) as table:
        # moths-fit quotes names and paths for spreadsheets ('=x); read them as written
        return [{k: _unquoted(v) for k, v in row.items()} for row in table.records()]


def _unquoted(cell: Any) -> Any:
    return from_spreadsheet_safe(cell) if isinstance(cell, str) else cell


def training_counts(
    run_dir: Path, hierarchy: LabelHierarchy, fallback: Any = None
) -> dict[int, int]:
    """Species class index -> training images, from the run's ``split.csv`` (else from
    ``fallback``, the data module that holds the same split; else empty)."""
    path = run_dir / SPLIT_CSV
    if path.is_file():
        species = [row["species"] for row in _split_rows(path) if row["phase"] == "train"]
    elif fallback is not None and fallback.split is not None:
        species = [fallback.samples[i].species for i in fallback.split.train]
    else:
        return {}
    return dict(Counter(hierarchy.targets(s)[0] for s in species))


def species_head(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(weight [C, D], bias [C]) of the species head, as float32 numpy."""
    head = model.net.heads[model.hierarchy.ranks[0]]
    return head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy()


def write_calibrated_checkpoint(
    checkpoint: dict[str, Any], calibration: Calibration, species_rank: str, output: Path
) -> None:
    """Write ``checkpoint`` with the calibration (tau baked into the species head) to ``output``."""
    result = copy.copy(checkpoint)
    meta = replace(
        checkpoint_meta(checkpoint),
        temperature=calibration.temperature,
        thresholds=calibration.thresholds,
        calibration=calibration.report,
        novelty=calibration.novelty.to_json() if calibration.novelty else None,
    )
    result[CHECKPOINT_KEY] = meta.to_dict()
    if calibration.tau_power:
        key = f"net.heads.{species_rank}.weight"
        state = dict(checkpoint["state_dict"])
        weight = state[key].detach().cpu().numpy()
        state[key] = torch.from_numpy(tau_normalise(weight, calibration.tau_power)).to(
            state[key].dtype
        )
        result["state_dict"] = state
    buffer = io.BytesIO()
    torch.save(result, buffer)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(output, buffer.getvalue())


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(calibration: Calibration) -> list[str]:
    """The calibration as lines for the console."""
    report = calibration.report
    lines = [f"calibrated on {report['images']['val']} validation images "
             f"(report on {report['images']['test']} test images)"]  # fmt: skip
    lines.append(f"{'rank':<10}{'T':>8}{'set':>6}{'NLL before':>12}{'after':>8}"
                 f"{'ECE before':>12}{'after':>8}")  # fmt: skip
    for rank, t in calibration.temperature.items():
        for split, fit in report["fit"].items():
            q = fit[rank]
            lines.append(
                f"{rank:<10}{t:>8.3f}{split:>6}{_number(q['nll_before']):>12}"
                f"{_number(q['nll_after']):>8}{_number(q['ece_before']):>12}{_number(q['ece_after']):>8}"
            )
    rollup = report["rollup"]
    areas = ", ".join(
        f"{m} {np.nanmean([v for v in s.values() if v is not None]):.4f}"
        for m, s in rollup["accuracy_coverage_area"].items()
    )
    lines.append(f"roll-up: {rollup['method']} (accuracy-coverage area: {areas})")
    lines.append(f"thresholds for precision {report['target_precision']} on val:")
    for rank, detail in report["threshold_details"].items():
        threshold = report["thresholds"][rank]
        if detail["reached"]:
            note = f"{detail['answered']} answered, precision {_number(detail['precision'])}"
        elif not detail.get("candidates"):
            note = "no validation image left to answer here: not measured"
        else:
            note = "cannot reach the target: falls back to the next rank"
        lines.append(f"  {rank:<10}{threshold:.4f}  {note}")
    tau = report["tau"]
    power = tau["power"]
    lines.append("tau: off" if power is None else f"tau: P = {power}")
    for when, shots in tau.get("shots", {}).items():
        for split, groups in shots.items():
            text = ", ".join(
                f"{name} {_number(g['accuracy'], 3)} ({g['classes']} classes)"
                for name, g in groups.items()
            )
            lines.append(f"  species accuracy by training count, {when}, {split}: {text}")
    novelty = report["novelty"]
    if novelty.get("method"):
        auroc = ", ".join(
            f"{m} {_number(a, 3)}" for m, a in novelty["auroc_held_out_val_species"].items()
        )
        lines.append(
            f"novelty: {novelty['method']} (AUROC on held-out val species: {auroc}), "
            f"threshold {novelty['threshold']:.4g} for 5% false positives, "
            f"{novelty['stored_bytes'] / 1024:.1f} KiB of statistics"
        )
        if novelty.get("test_known_flagged") is not None:
            lines.append(
                f"  test: {novelty['test_known_flagged']:.1%} of known-species images flagged novel"
            )
        if novelty.get("test_auroc_unseen_species") is not None:
            lines.append(
                f"  test: AUROC on species never trained {novelty['test_auroc_unseen_species']:.3f}"
            )
    else:
        lines.append(f"novelty: not fitted ({novelty.get('why')})")
    return lines
