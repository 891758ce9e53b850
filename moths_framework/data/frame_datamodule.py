"""The LightningDataModule of a detector: trap frames from a COCO file, split per frame."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from moths_framework.atomic_files import write_text_atomically
from moths_framework.csv_cells import spreadsheet_safe_row
from moths_framework.data.coco import CocoError, CocoFrames, Frame, read_coco
from moths_framework.data.frame_dataset import FrameDataset, collate_frames
from moths_framework.data.frame_transforms import default_frame_augmentation
from moths_framework.data.split import SPLIT_CSV, Split, hash_split

__all__ = ["FrameDataModule", "frame_labels", "write_frame_split_csv"]

log = logging.getLogger(__name__)

Phase = Literal["train", "val", "test", "all"]


def frame_labels(
    coco: CocoFrames, label_by: Literal["category", "species"]
) -> tuple[tuple[str, ...], list[tuple[int, ...]]]:
    """The class names (labels 1..N) and each frame's label per box.

    ``category``: COCO's categories in id order. ``species``: the sorted
    ``attributes.species`` names, which every box must then carry.

    Raises:
        CocoError: ``species`` asked for and a box has none.
    """
    if label_by == "category":
        label = {category_id: n for n, category_id in enumerate(coco.categories, start=1)}
        return coco.class_names(), [tuple(label[c] for c in f.category_ids) for f in coco.frames]
    if label_by != "species":
        raise ValueError(f"label_by must be 'category' or 'species', got {label_by!r}")
    for frame in coco.frames:
        if None in frame.species:
            raise CocoError(
                f"{coco.path}: a box of {frame.file_name} has no attributes.species; "
                "label_by: species needs one on every box (or use label_by: category)"
            )
    names = tuple(sorted({s for f in coco.frames for s in f.species}))
    label = {name: n for n, name in enumerate(names, start=1)}
    return names, [tuple(label[s] for s in f.species) for f in coco.frames]


def write_frame_split_csv(run_dir: str | Path, frames: list[Frame], split: Split) -> Path:
    """Write ``<run_dir>/split.csv``: ``path,boxes,phase`` for every frame, atomically."""
    path = Path(run_dir) / SPLIT_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    phases = split.phases()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("path", "boxes", "phase"))
    rows = ((str(f.path), len(f.boxes), phases[i]) for i, f in enumerate(frames))
    writer.writerows(map(spreadsheet_safe_row, rows))
    write_text_atomically(path, text.getvalue())
    return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FrameDataModule(pl.LightningDataModule):
    """Trap frames with boxes for training, validating and testing a detector.

    The COCO file is read and checked when the module is created, so the model can
    be sized from :attr:`classes` (labels 1..N; the detector's ``num_classes`` is
    :attr:`num_classes`, N + 1 with the background). Each frame is in train, val or
    test by the hash of (``split_seed``, its identity), as the classifier's images
    are: adding frames never moves one from train to val or test.

    Args:
        instances: the COCO ``instances.json``.
        images: the folder its ``file_name`` s are relative to (default: found beside it).
        label_by: ``category`` (COCO's categories, e.g. one ``moth``) or ``species``
            (each box's ``attributes.species``: a detector that names species).
        test_fraction: fraction of frames for validation, and again for test.
        split_seed: seed of the split.
        split_by: a frame's identity: its ``file_name`` (stable while files keep their
            names) or its content's ``sha256`` (stable across renames; reads every file).
        max_side: shrink larger frames to this longer side (boxes alike) as they are
            read; ``None`` keeps their size (the detector resizes them itself).
        batch_size: frames per batch.
        num_workers: data-loading worker processes.
        pin_memory: pin host memory (speeds up copies to a GPU).
        persistent_workers: keep workers alive between epochs.
        train_transforms: ``torchvision.transforms.v2`` augmentations for training, in
            order; default: :func:`~moths_framework.data.frame_transforms.
            default_frame_augmentation`. Validation and test frames are not augmented.
    """

    def __init__(
        self,
        instances: str | Path,
        images: str | Path | None = None,
        label_by: Literal["category", "species"] = "category",
        test_fraction: float = 0.15,
        split_seed: int = 42,
        split_by: Literal["file_name", "sha256"] = "file_name",
        max_side: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        train_transforms: list[Callable] | None = None,
    ) -> None:
        super().__init__()
        self.coco = read_coco(instances, images)
        if not self.coco.frames:
            raise CocoError(f"{self.coco.path} lists no images")
        self.classes, self.labels = frame_labels(self.coco, label_by)
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.split_by = split_by
        self.max_side = max_side
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_transforms = train_transforms
        self.split: Split | None = None
        self.predict_phase: Phase = "test"

    @property
    def frames(self) -> list[Frame]:
        return self.coco.frames

    @property
    def num_classes(self) -> int:
        """Classes including the background (label 0): what torchvision's detectors take."""
        return len(self.classes) + 1

    def use_classes(self, classes: Sequence[str]) -> None:
        """Label the boxes for a model of ``classes`` (label k names ``classes[k - 1]``):
        a trained detector's, when its frames list their categories in another order.

        Raises:
            CocoError: a box is of a class that is not among ``classes``.
        """
        classes = tuple(classes)
        if classes == self.classes:
            return
        used = {self.classes[label - 1] for labels in self.labels for label in labels}
        unknown = sorted(used - set(classes))
        if unknown:
            raise CocoError(
                f"{self.coco.path}: boxes of {', '.join(map(repr, unknown))}, a class the "
                f"model was not trained for (its classes: {', '.join(map(repr, classes))})"
            )
        label = {name: classes.index(name) + 1 for name in used}
        self.labels = [tuple(label[self.classes[k - 1]] for k in labels) for labels in self.labels]
        self.classes = classes

    def identities(self) -> list[str]:
        """What the split hashes for each frame (see ``split_by``)."""
        if self.split_by == "sha256":
            return [_file_sha256(frame.path) for frame in self.frames]
        return [frame.file_name.replace("\\", "/") for frame in self.frames]

    def setup(self, stage: str) -> None:
        if self.split is None:
            self.split = hash_split(self.identities(), self.test_fraction, self.split_seed)
            sizes = {phase: len(getattr(self.split, phase)) for phase in ("train", "val", "test")}
            boxes = sum(len(f.boxes) for f in self.frames)
            empty = sum(not f.boxes for f in self.frames)
            log.info(
                "split %d frames (%d boxes, %d frames without any) of %d classes: "
                "train %d, val %d, test %d",
                len(self.frames), boxes, empty, len(self.classes), *sizes.values(),
            )  # fmt: skip
        if stage == "fit" and self.trainer is not None and self.trainer.is_global_zero:
            write_frame_split_csv(self.trainer.default_root_dir, self.frames, self.split)

    def summary(self, examples: int = 16) -> dict[str, Any]:
        """What the detector was trained on, for the model card; ``examples`` val frame
        paths for an export's parity check."""
        if self.split is None:
            self.setup("summary")
        assert self.split is not None
        return {
            "frames": len(self.frames),
            "boxes": sum(len(f.boxes) for f in self.frames),
            "classes": list(self.classes),
            "split": {k: len(getattr(self.split, k)) for k in ("train", "val", "test")},
            "source": str(self.coco.path),
            "val_examples": [str(self.frames[i].path) for i in self.split.val[:examples]],
        }

    def indices(self, phase: Phase) -> list[int]:
        """Frame indices of ``phase`` (``all``: every frame), in increasing order."""
        if phase == "all":
            return list(range(len(self.frames)))
        if self.split is None:
            self.setup(phase)
        return list(getattr(self.split, phase))

    def dataset(self, phase: Phase, train: bool = False) -> FrameDataset:
        """The frames of ``phase``; augmented when ``train``."""
        chosen = self.indices(phase)
        augmentations: list[Callable] = []
        if train:
            given = self.train_transforms
            augmentations = list(given) if given is not None else default_frame_augmentation()
        return FrameDataset(
            [self.frames[i] for i in chosen],
            [self.labels[i] for i in chosen],
            augmentations,
            max_side=self.max_side,
        )

    def _loader(self, phase: Phase, train: bool = False) -> DataLoader:
        return DataLoader(
            self.dataset(phase, train),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_frames,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The ``predict_phase`` frames (``test`` by default, or ``all``), not augmented."""
        return self._loader(self.predict_phase)
