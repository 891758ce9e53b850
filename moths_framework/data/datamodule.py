"""The LightningDataModule: data source + label hierarchy + split + transforms."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision.transforms import Compose

from moths_framework.data.dataset import (
    SampleDataset,
    collate_skipping_broken,
    collate_with_indices,
)
from moths_framework.data.sources import DataSource, DataSourceError
from moths_framework.data.split import (
    Split,
    sampling_weights,
    stratified_split,
    write_split_csv,
)
from moths_framework.data.transforms import eval_transform, train_transform
from moths_framework.hierarchy import HierarchySource, LabelHierarchy
from moths_framework.preprocessing import Preprocessing

__all__ = ["MothsDataModule", "TransformError"]

log = logging.getLogger(__name__)

Phase = Literal["train", "val", "test", "all"]


class TransformError(ValueError):
    """Configured transforms disagree with the model's preprocessing."""


def _check_normalisation(transforms: list[Callable], p: Preprocessing, key: str) -> None:
    """A listed ``Normalize`` must use the model's mean and std: the exported model
    normalises with those, so anything else trains on inputs production never sees."""
    for t in transforms:
        if type(t).__name__ != "Normalize":
            continue
        mean, std = tuple(map(float, t.mean)), tuple(map(float, t.std))
        if (mean, std) != (p.mean, p.std):
            raise TransformError(
                f"data.{key}: Normalize(mean={list(mean)}, std={list(std)}) differs from "
                f"model.preprocessing (mean={list(p.mean)}, std={list(p.std)}), which the "
                "exported model applies: set model.preprocessing instead, or leave "
                f"data.{key} out to build it from model.preprocessing"
            )


class MothsDataModule(pl.LightningDataModule):
    """Labelled moth images for training, validation, testing and prediction.

    The source is read and the label hierarchy built when the module is
    created, so the model's heads can be sized from :attr:`hierarchy`.

    Args:
        source: where images and species names come from.
        hierarchy: the label hierarchy (species → group, family, genus).
        min_samples: species with fewer images are bundled into ``Other``.
        test_fraction: fraction of each species for validation, and again for test.
        split_seed: seed of the stratified split.
        batch_size: training batch size (evaluation uses twice as much).
        num_workers: data-loading worker processes.
        pin_memory: pin host memory (speeds up copies to a GPU).
        persistent_workers: keep workers alive between epochs.
        weighted_sampling: sample training images with class-balancing weights.
        weighted_sampling_fraction: exponent of the inverse class frequency
            (0 = as the data comes, 1 = fully balanced).
        train_transforms: transforms for training, composed in order; default:
            random resized crop + flip + normalisation from the model's preprocessing.
        test_transforms: transforms for val/test/predict; default: the model's
            evaluation preprocessing, the same the exported ONNX model applies.
            Override only if you know the export should differ from it.
        fast_decode: decode each JPEG at the smallest of 1/2, 1/4 or 1/8 scale at
            which the first transform's crop (a random resized crop, or a resize and
            centre crop) still has the output's pixels, as ``moths-infer`` does by
            default (see :mod:`moths_framework.scaled_decode`); ``false`` decodes
            every image at full size.
    """

    def __init__(
        self,
        source: DataSource,
        hierarchy: HierarchySource,
        min_samples: int = 0,
        test_fraction: float = 0.15,
        split_seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        weighted_sampling: bool = False,
        weighted_sampling_fraction: float = 1.0,
        train_transforms: list[Callable] | None = None,
        test_transforms: list[Callable] | None = None,
        fast_decode: bool = True,
    ) -> None:
        super().__init__()
        self.source = source
        self.min_samples = min_samples
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.weighted_sampling = weighted_sampling
        self.weighted_sampling_fraction = weighted_sampling_fraction
        self.train_transforms = train_transforms
        self.test_transforms = test_transforms
        self.fast_decode = fast_decode
        self.hierarchy_source = hierarchy
        self.samples = source.samples()
        if not self.samples:
            raise DataSourceError(f"the data source {source!r} holds no images")
        self.species_counts = Counter(s.species for s in self.samples)
        self._hierarchy: LabelHierarchy | None = None
        self._targets: list[tuple[int, ...]] | None = None
        self.split: Split | None = None
        self.predict_phase: Phase = "test"

    @property
    def hierarchy(self) -> LabelHierarchy:
        """The classes the model is trained on: built from the hierarchy source and the
        data (``min_samples``), unless :meth:`use_hierarchy` gave one."""
        if self._hierarchy is None:
            self._hierarchy = self.hierarchy_source.build(self.species_counts, self.min_samples)
        return self._hierarchy

    def use_hierarchy(self, hierarchy: LabelHierarchy) -> None:
        """Label the data with ``hierarchy`` (a checkpoint's) instead of building one.

        Data species that ``hierarchy`` has no class for count as ``Other``; the
        hierarchy source file is not read at all.
        """
        self._hierarchy = hierarchy
        self._targets = None
        known = {*hierarchy.classes(hierarchy.ranks[0]), *hierarchy.bundled}
        unknown = sorted(s for s in self.species_counts if s not in known)
        if unknown:
            log.info(
                "%d data species unknown to the model count as Other: %s",
                len(unknown),
                ", ".join(unknown),
            )

    @property
    def targets(self) -> list[tuple[int, ...]]:
        """Class index per rank of every sample, under :attr:`hierarchy`."""
        if self._targets is None:
            self._targets = [self.hierarchy.targets(s.species) for s in self.samples]
        return self._targets

    def setup(self, stage: str) -> None:
        if self.split is None:
            self.split = stratified_split(self.samples, self.test_fraction, self.split_seed)
            self._log_split()
        if stage == "fit" and self.trainer is not None and self.trainer.is_global_zero:
            # The run records what it trains and evaluates on (ranks split alike).
            write_split_csv(self.trainer.default_root_dir, self.samples, self.split)

    def _log_split(self) -> None:
        assert self.split is not None
        sizes = {k: len(getattr(self.split, k)) for k in ("train", "val", "test")}
        log.info(
            "split %d images of %d species: train %d, val %d, test %d; classes per rank: %s",
            len(self.samples),
            len(self.species_counts),
            *sizes.values(),
            self.hierarchy.num_classes(),
        )
        train = Counter(self.samples[i].species for i in self.split.train)
        (rarest, low), *_ = sorted(train.items(), key=lambda kv: (kv[1], kv[0]))
        (commonest, high), *_ = sorted(train.items(), key=lambda kv: (-kv[1], kv[0]))
        log.info(
            "training images per species: %d (%s) to %d (%s), median %d",
            low, rarest, high, commonest, sorted(train.values())[len(train) // 2],
        )  # fmt: skip
        untrained = sorted(set(self.species_counts) - set(train))
        if untrained:  # each of its few images hashed into val or test (see stratified_split)
            log.warning("species with no training image: %s", ", ".join(untrained))
        if self.hierarchy.bundled:
            log.info("bundled into Other: %s", ", ".join(self.hierarchy.bundled))

    def summary(self, examples: int = 512) -> dict[str, Any]:
        """What the model was trained on, for the model card; ``examples`` val image paths
        let an export check parity, and calibrate int8 (256 by default), on real images."""
        split = self.split or stratified_split(self.samples, self.test_fraction, self.split_seed)
        return {
            "images": len(self.samples),
            "species_in_data": len(self.species_counts),
            "split": {k: len(getattr(split, k)) for k in ("train", "val", "test")},
            "min_samples": self.min_samples,
            "source": repr(self.source),
            "val_examples": [str(self.samples[i].path) for i in split.val[:examples]],
        }

    def _preprocessing(self) -> Preprocessing:
        model = self.trainer.lightning_module if self.trainer else None
        preprocessing = getattr(model, "preprocessing", None)
        return preprocessing if preprocessing is not None else Preprocessing()

    def _transform(self, train: bool) -> Callable:
        given = self.train_transforms if train else self.test_transforms
        p = self._preprocessing()
        if given:
            _check_normalisation(given, p, "train_transforms" if train else "test_transforms")
            return Compose(list(given))
        return train_transform(p) if train else eval_transform(p)

    def _dataset(self, indices: list[int], train: bool, with_index: bool = False) -> SampleDataset:
        return SampleDataset(
            [self.samples[i] for i in indices],
            [self.targets[i] for i in indices],
            self._transform(train),
            with_index=with_index,
            fast_decode=self.fast_decode,
        )

    def _loader(self, indices: list[int], train: bool, with_index: bool = False) -> DataLoader:
        sampler = None
        if train and self.weighted_sampling:
            species_index = [self.targets[i][0] for i in indices]
            weights = sampling_weights(species_index, self.weighted_sampling_fraction)
            sampler = WeightedRandomSampler(weights, num_samples=len(indices), replacement=True)
        return DataLoader(
            self._dataset(indices, train, with_index),
            batch_size=self.batch_size if train else self.batch_size * 2,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(indices) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_with_indices if with_index else collate_skipping_broken,
        )

    def _indices(self, phase: str) -> list[int]:
        if phase == "all":
            return list(range(len(self.samples)))
        if self.split is None:
            self.setup(phase)
        return getattr(self.split, phase)

    def predict_indices(self) -> list[int]:
        """Sample indices that :meth:`predict_dataloader` covers (``predict_phase``), in
        the order its batches' ``indices`` refer to."""
        return self._indices(self.predict_phase)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._indices("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._indices("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._indices("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        """The ``predict_phase`` part (``test`` by default, or ``all``), as
        :class:`~moths_framework.data.dataset.IndexedBatch` es: every image is accounted for."""
        return self._loader(self.predict_indices(), train=False, with_index=True)
