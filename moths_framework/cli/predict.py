"""``moths-predict``: run a checkpoint over labelled images and write a prediction folder.

``moths-predict --config RUN/config.yaml --ckpt_path RUN/best.ckpt [--split ...]
[--data.source ...] [--output DIR] [--images-by-prediction true]`` writes
``predictions.csv``, ``outputs.npz`` and ``hierarchy.json`` (see
:func:`moths_framework.evaluate.folder_writer.write_prediction_folder`) to
``RUN/predictions/<split>/`` by default. The model runs on the checkpoint's own
label hierarchy; an image that cannot be read keeps its row, with ``error``.
On a detector's run it writes a detection folder instead
(:mod:`moths_framework.evaluate.detection_folder`): every box the detector finds,
down to a score of 0.001, with the true boxes beside them.
An existing folder is replaced only when it is empty or a prediction folder
``moths-predict`` wrote, holding nothing else (see :mod:`moths_framework.output_folders`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from moths_framework.cli.lightning import run_command
from moths_framework.model.checkpoint_meta import CheckpointError
from moths_framework.model.trust import lightning_load_options

if TYPE_CHECKING:
    from moths_framework.train.cli import MothsCLI
    from moths_framework.train.detector_cli import DetectorCLI

# torch, Lightning: imported in the functions that run, not for a --help from the cache.


def default_split(cli: MothsCLI) -> str:
    """``test`` for the data source the checkpoint was trained on, ``all`` for any other."""
    from moths_framework.model.checkpoint import checkpoint_meta

    assert cli.checkpoint is not None
    trained_on = checkpoint_meta(cli.checkpoint).data.get("source")
    return "test" if trained_on == repr(cli.datamodule.source) else "all"


def run_predict(cli: MothsCLI) -> None:
    """Predict the chosen split and write the prediction folder; prints where."""
    from moths_framework.train.detector_cli import DetectorCLI

    if isinstance(cli, DetectorCLI):
        run_detector_predict(cli)
        return
    from moths_framework.calibrate.settings import inference_settings
    from moths_framework.evaluate.folder_writer import (
        PREDICTION_FOLDER_MAKER,
        write_prediction_folder,
    )
    from moths_framework.model.checkpoint import checkpoint_meta
    from moths_framework.model.predict import gather_outputs
    from moths_framework.output_folders import check_replaceable_folder

    assert cli.checkpoint is not None
    if cli.trainer.world_size > 1:
        raise CheckpointError("moths-predict runs in one process: use --trainer.devices 1")
    split = cli.config.get("split") or default_split(cli)
    data, model = cli.datamodule, cli.model
    settings = inference_settings(checkpoint_meta(cli.checkpoint, cli.config.ckpt_path))
    data.predict_phase = split
    ckpt = Path(cli.config.ckpt_path)
    out = Path(cli.config.get("output") or ckpt.parent / "predictions" / split)
    check_replaceable_folder(out, PREDICTION_FOLDER_MAKER)  # before the run, not after it
    predict = cli.trainer.predict
    load = lightning_load_options(predict)
    batches = predict(model, datamodule=data, ckpt_path=str(ckpt), **load)
    indices = data.predict_indices()
    outputs = gather_outputs(
        batches or [], len(indices), model.hierarchy.num_classes(), model.backbone.num_features
    )
    write_prediction_folder(
        out,
        model.hierarchy,
        paths=[str(data.samples[i].path) for i in indices],
        true_species=[data.samples[i].species for i in indices],
        logits=outputs.logits,
        features=outputs.features,
        errors=outputs.errors,
        temperature=settings.temperature,
        thresholds=settings.thresholds,
        images_by_prediction=bool(cli.config.get("images_by_prediction")),
        rollup=settings.rollup,
        novelty=settings.novelty,
    )
    failed = sum(e is not None for e in outputs.errors)
    print(
        f"moths-predict: {len(indices)} images of split {split!r} ({failed} could not be read); "
        f"wrote {out}"
    )


def run_detector_predict(cli: DetectorCLI) -> None:
    """Run a detector over the chosen split, every box scoring at least
    :data:`~moths_framework.model.detector_lightning.EVAL_SCORE_CUT` kept, and write the
    detection folder (:mod:`moths_framework.evaluate.detection_folder`); prints where."""
    from moths_framework.evaluate.detection_folder import write_detection_folder
    from moths_framework.evaluate.folder_writer import PREDICTION_FOLDER_MAKER
    from moths_framework.model.detector_predict import frame_predictions
    from moths_framework.output_folders import check_replaceable_folder

    assert cli.detector_meta is not None
    if cli.trainer.world_size > 1:
        raise CheckpointError("moths-predict runs in one process: use --trainer.devices 1")
    data, meta = cli.datamodule, cli.detector_meta
    trained_on = meta.data.get("source")
    split = cli.config.get("split") or ("test" if trained_on == str(data.coco.path) else "all")
    data.predict_phase = split
    ckpt = Path(cli.config.ckpt_path)
    out = Path(cli.config.get("output") or ckpt.parent / "predictions" / split)
    check_replaceable_folder(out, PREDICTION_FOLDER_MAKER)  # before the run, not after it
    load = lightning_load_options(cli.trainer.predict)
    batches = cli.trainer.predict(cli.model, datamodule=data, ckpt_path=str(ckpt), **load)
    indices = data.indices(split)
    truth, predicted = frame_predictions(
        batches or [], [data.frames[i] for i in indices], [data.labels[i] for i in indices]
    )
    write_detection_folder(
        out, meta.classes, truth, predicted,
        score_threshold=meta.score_threshold,
        metadata={"checkpoint": str(ckpt), "split": split, "detector": meta.detector},
    )  # fmt: skip
    failed = sum(bool(p.error) for p in predicted)
    kept = sum(int((p.scores >= meta.score_threshold).sum()) for p in predicted if len(p.scores))
    print(
        f"moths-predict: {len(indices)} frames of split {split!r} ({failed} could not be read), "
        f"{kept} boxes scoring at least {meta.score_threshold:g}; wrote {out}"
    )


def main(args: list[str] | None = None) -> int:
    return run_command("predict", args, run_predict)
