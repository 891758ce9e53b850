"""``OnnxClassifier``: an exported model on ONNX Runtime, from image files to predictions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from moths_framework.hierarchy import OTHER, LabelHierarchy
from moths_framework.inference.decode_ahead import Decoded, ImageInput, decoded_batches
from moths_framework.inference.metadata import FEATURES_OUTPUT, INPUT_NAME, ModelFormatError
from moths_framework.inference.model_file import checked_metadata, novelty_detector, open_model_file
from moths_framework.inference.prediction import (
    Prediction,
    check_thresholds,
    roll_up,
    softmax,
    top_k,
)
from moths_framework.inference.preprocess import crop_input, model_input, preprocess
from moths_framework.inference.providers import EngineSettings, workers_beside
from moths_framework.inference.rollup import (
    check_rollup_method,
    consistent_path,
    rank_probabilities,
    species_ancestry,
)
from moths_framework.inference.species_list import (
    DEFAULT_MASK_MODE,
    allowed_classes,
    check_mask_mode,
    masked_probabilities,
    read_species_list,
)

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["ImageInput", "OnnxClassifier", "default_decode_workers"]

SpeciesList = str | os.PathLike | Iterable[str]


def default_decode_workers(provider: str, cores: int | None = None) -> int:
    """Decoding threads for a model on ``provider``: at most ``cores`` (this machine's),
    4 on the CPU provider (the model needs the other cores), 16 on a GPU provider."""
    return workers_beside(provider, 4, 16, cores)


class OnnxClassifier:
    """A moths model on ONNX Runtime. Build it with :meth:`from_file`.

    Args:
        session: an open session on a model that follows the contract of
            :mod:`moths_framework.inference.metadata`.
        source: the model file, for messages.
        thresholds: rank -> probability the top-1 must reach in the roll-up;
            ranks not given keep the model's calibrated thresholds (0.5 when
            the model was not calibrated).
        species_list: restrict predictions to these species (a text file with
            one name per line, or names); see :mod:`.species_list`.
        mask_mode: where a species list puts the probability of the classes it
            removes: ``"other"`` (default; listed classes keep their probability)
            or ``"renormalize"`` (each head renormalised over the listed classes).
        decode_workers: threads that decode and preprocess images while the
            model runs; default :func:`default_decode_workers` (4 on the CPU
            provider, where decoding shares the cores with the model; up to 16 on a
            GPU provider, which classifies far faster than 4 threads decode).
        fast_decode: decode JPEG files at the smallest reduced scale
            (``Image.draft``) that still covers the resize (the default): faster on
            large photos, and what validation during training does too
            (:mod:`moths_framework.scaled_decode`). ``False``: a full decode, equal
            to torchvision's evaluation transform. PIL images always decode whole.
        rollup: ``heads``, ``species_sum`` or ``fused`` (see :mod:`.rollup`);
            default: the model's calibrated method, or the independent walk of
            the heads for an uncalibrated model.
        features: put each image's ``features`` output in its prediction (for
            tracking: the appearance of a crop).

    Raises:
        ModelFormatError: the model lacks moths metadata or its inputs/outputs
            do not match it, or ``features`` is asked of a model without that output.
        SpeciesListError: the species list names species the model does not know.
        ValueError: an unknown ``mask_mode``.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        source: str,
        *,
        thresholds: Mapping[str, float] | None = None,
        species_list: SpeciesList | None = None,
        mask_mode: str = DEFAULT_MASK_MODE,
        decode_workers: int | None = None,
        fast_decode: bool = True,
        rollup: str | None = None,
        features: bool = False,
    ) -> None:
        self.metadata = checked_metadata(session, source)
        self.session = session
        self.source = source
        given = {**self.metadata.calibrated_thresholds, **(thresholds or {})}
        self.thresholds = check_thresholds(self.hierarchy.ranks, given)
        method = rollup or self.metadata.rollup_method
        self.rollup = check_rollup_method(method) if method is not None else None
        self._ancestry = species_ancestry(self.hierarchy)
        self.novelty = novelty_detector(session, self.metadata, source)
        self.features = features and _has_features(session, source)
        self.ranks_by_specificity = self.hierarchy.ranks_by_specificity()
        self._classes = {r: self.hierarchy.classes(r) for r in self.hierarchy.ranks}
        self.mask_mode = check_mask_mode(mask_mode)
        self._masks = (
            allowed_classes(self.hierarchy, read_species_list(species_list))
            if species_list is not None
            else None
        )
        self._other_index = {rank: classes.index(OTHER) for rank, classes in self._classes.items()}
        self._decode_workers = decode_workers
        self.fast_decode = fast_decode

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        providers: str | Sequence[str] = "auto",
        *,
        thresholds: Mapping[str, float] | None = None,
        species_list: SpeciesList | None = None,
        mask_mode: str = DEFAULT_MASK_MODE,
        num_threads: int | None = None,
        decode_workers: int | None = None,
        fast_decode: bool = True,
        rollup: str | None = None,
        engine: EngineSettings | None = None,
        features: bool = False,
    ) -> OnnxClassifier:
        """Open a model exported by ``moths-export``.

        Args:
            path: the ``.onnx`` file, or ``zoo:ID[@VERSION]`` (fetched into the zoo cache
                and checksum-verified; see :mod:`moths_framework.zoo`).
            providers: ``"auto"`` (TensorRT, CUDA, CPU: the first this ONNX Runtime
                has), or names as a list or comma-separated string. A GPU
                provider that fails to start falls back to CPU with a warning.
            thresholds, species_list, mask_mode, decode_workers, fast_decode, rollup,
                features: see the class.
            num_threads: ONNX Runtime intra-op threads; default one per physical core.
            engine: TensorRT engine settings (batch size its shape profile is optimised
                for, fp16); default: batch 32, fp16 when the model is fp16.

        Raises:
            FileNotFoundError: no such file.
            ValueError: unknown/unavailable provider, or a file ONNX Runtime cannot load.
            ModelFormatError: not a moths model (a ValueError too).
            ZooError: a ``zoo:`` name that cannot be resolved (a ValueError too).
        """
        session, source = open_model_file(path, providers, num_threads, engine)
        return cls(
            session,
            source,
            thresholds=thresholds,
            species_list=species_list,
            mask_mode=mask_mode,
            decode_workers=decode_workers,
            fast_decode=fast_decode,
            rollup=rollup,
            features=features,
        )

    @property
    def hierarchy(self) -> LabelHierarchy:
        """The classes of every rank."""
        return self.metadata.hierarchy

    @property
    def provider(self) -> str:
        """The execution provider that runs the model."""
        return self.session.get_providers()[0]

    @property
    def decode_workers(self) -> int:
        """Threads decoding images ahead of the model: as given, else
        :func:`default_decode_workers` for :attr:`provider`."""
        return self._decode_workers or default_decode_workers(self.provider)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image as a model input, float32 ``[3, H, W]``."""
        return preprocess(image, self.metadata.preprocessing)

    def model_input(self, image: ImageInput | bytes, max_pixels: int | None = None) -> np.ndarray:
        """Decode an image file (path or bytes) or a PIL image to one model input, float32
        ``[3, H, W]``, as :meth:`predict` does (``fast_decode`` included)."""
        p = self.metadata.preprocessing
        return model_input(image, p, fast=self.fast_decode, max_pixels=max_pixels)

    def crop_input(self, image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
        """One model input from ``box`` (left, top, right, bottom, whole pixels) of an RGB
        image, a frame say: :meth:`preprocess` of ``image.crop(box)``, resizing only the
        pixels its centre crop keeps (see :func:`.preprocess.crop_input`)."""
        return crop_input(image, box, self.metadata.preprocessing)

    def predict_crops(
        self,
        image: Image.Image,
        boxes: Sequence[tuple[int, int, int, int]],
        top_k: int = 5,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """Classify boxes of one RGB image (a frame's crops): one :class:`Prediction` per
        box, in order, its source ``#1``, ``#2``, ...; what :meth:`predict` gives for the
        crops cut (see :meth:`crop_input`)."""
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
        predictions = []
        for start in range(0, len(boxes), batch_size):
            batch = [
                Decoded(f"#{start + i + 1}", self.crop_input(image, box), None)
                for i, box in enumerate(boxes[start : start + batch_size])
            ]
            predictions.extend(self._classify(batch, top_k))
        return predictions

    def logits(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits per rank for a preprocessed batch ``[N, 3, H, W]``."""
        return self._run(batch)[0]

    def model_outputs(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """One model call: raw logits per rank, and the ``features`` output when the model
        has a novelty detector (``None`` otherwise), for :meth:`novelty_scores`."""
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Logits per rank, and the features when the novelty detector (or the caller,
        ``features=True``) needs them."""
        inputs = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        wanted = self.novelty is not None or self.features
        names = [*self.hierarchy.ranks, *([FEATURES_OUTPUT] if wanted else [])]
        outputs = self.session.run(names, inputs)
        logits = dict(zip(self.hierarchy.ranks, outputs, strict=False))
        return logits, outputs[-1] if wanted else None

    def keep_features(self) -> bool:
        """From now on, run the model's ``features`` output with every batch (as
        ``features=True`` does) when the model has one; whether it has."""
        self.features = FEATURES_OUTPUT in {o.name for o in self.session.get_outputs()}
        return self.features

    def novelty_scores(self, features: np.ndarray) -> np.ndarray | None:
        """Novelty score per row of the ``features`` output; ``None`` without a detector."""
        return None if self.novelty is None else self.novelty.score(features)

    def probabilities(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Per-rank probabilities: temperature applied, species list (if any) enforced,
        and the roll-up method's view of the coarse ranks (see :mod:`.rollup`)."""
        return self.probabilities_from_logits(self.logits(batch))

    def probabilities_from_logits(self, logits: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-rank probabilities of raw logits ``[N, classes]`` as :meth:`logits` returns them.

        Temperature applied, species list (if any) enforced: what :meth:`probabilities`
        gives, for callers that run the model themselves (the server's batcher).
        """
        result = {}
        for rank, values in logits.items():
            temperature = self.metadata.temperature_of(rank)
            if self._masks is None:
                result[rank] = softmax(values, temperature)
            else:
                result[rank] = masked_probabilities(
                    values, self._masks[rank], self._other_index[rank], self.mask_mode, temperature
                )
        if self.rollup is None:
            return result
        return rank_probabilities(result, self.rollup, self._ancestry, self.hierarchy.ranks[0])

    def predict(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, batch_size: int = 32
    ) -> list[Prediction]:
        """Classify images; one :class:`Prediction` per input, in input order.

        Args:
            images: paths or PIL images (or one of them).
            top_k: classes reported per rank.
            batch_size: images per model call.

        An image that cannot be decoded gives a prediction with ``error`` set;
        it never raises for one bad image.
        """
        return list(self.predict_iter(images, top_k, batch_size))

    def predict_iter(
        self, images: ImageInput | Iterable[ImageInput], top_k: int = 5, batch_size: int = 32
    ) -> Iterator[Prediction]:
        """Like :meth:`predict`, yielding predictions as batches finish (for long runs)."""
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        return self._predictions(images, top_k, batch_size)  # checked now, run when iterated

    def _predictions(
        self, images: Iterable[ImageInput], top_k: int, batch_size: int
    ) -> Iterator[Prediction]:
        batches = decoded_batches(images, batch_size, self.decode_workers, self.model_input)
        with closing(batches):  # stops the decoding threads when the caller stops early
            for batch in batches:
                yield from self._classify(batch, top_k)

    def _classify(self, batch: list[Decoded], k: int) -> list[Prediction]:
        decoded = [item.array for item in batch if item.array is not None]
        probs, scores = {}, None
        if decoded:
            logits, features = self._run(np.stack(decoded))
            probs = self.probabilities_from_logits(logits)
            scores = self.novelty_scores(features) if features is not None else None
        kept = features if self.features else None
        results, row = [], 0
        for item in batch:
            if item.array is None:
                results.append(Prediction(item.source, error=item.error))
                continue
            score = None if scores is None else float(scores[row])
            rows = {r: p[row] for r, p in probs.items()}
            prediction = self._prediction(item.source, rows, k, score)
            if kept is not None:
                prediction = dataclasses.replace(prediction, features=kept[row].astype(np.float32))
            results.append(prediction)
            row += 1
        return results

    def prediction_from_probabilities(
        self,
        source: str,
        probs: Mapping[str, np.ndarray],
        top_k: int = 5,
        novelty_score: float | None = None,
    ) -> Prediction:
        """The :class:`Prediction` of one image from its per-rank probability rows.

        ``probs`` is rank -> one row of :meth:`probabilities_from_logits`; the
        result is what :meth:`predict` gives for that image (top-k, roll-up);
        ``novelty_score`` (from :meth:`novelty_scores`) sets ``novel``.
        """
        return self._prediction(source, probs, top_k, novelty_score)

    def _prediction(
        self, source: str, probs: Mapping[str, np.ndarray], k: int, novelty: float | None = None
    ) -> Prediction:
        ranked = {
            rank: top_k(self._ranking(rank, p), self._classes[rank], k, self._allowed_count(rank))
            for rank, p in probs.items()
        }
        path = self._path(probs) if self.rollup is not None else None
        top1 = path or {rank: scores[0] for rank, scores in ranked.items()}
        answer, rank, prob, confident = roll_up(top1, self.ranks_by_specificity, self.thresholds)
        novel = None if novelty is None else bool(self.novelty.is_novel(novelty))
        return Prediction(source, ranked, answer, rank, prob, confident, None, path, novelty, novel)

    def _path(self, probs: Mapping[str, np.ndarray]) -> dict[str, tuple[str, float]]:
        """One image's hierarchy-consistent path: rank -> (class name, probability)."""
        species = self.hierarchy.ranks[0]
        allowed = None if self._masks is None else self._masks[species]
        rows = {rank: np.asarray(p)[None, :] for rank, p in probs.items()}
        found = consistent_path(rows, self._ancestry, self.ranks_by_specificity, allowed)
        return {
            rank: (self._classes[rank][int(index[0])], float(prob[0]))
            for rank, (index, prob) in found.items()
        }

    def _ranking(self, rank: str, probs: np.ndarray) -> np.ndarray:
        """``probs`` with removed classes below every kept one, even a kept one at 0."""
        return probs if self._masks is None else np.where(self._masks[rank], probs, -1.0)

    def _allowed_count(self, rank: str) -> int:
        if self._masks is None:
            return len(self._classes[rank])
        return int(self._masks[rank].sum())


def _has_features(session: ort.InferenceSession, source: str) -> bool:
    """True; ModelFormatError when the model has no ``features`` output."""
    if FEATURES_OUTPUT not in {o.name for o in session.get_outputs()}:
        raise ModelFormatError(
            f"{source} has no {FEATURES_OUTPUT!r} output (exported with --no-features): "
            "it cannot give feature vectors"
        )
    return True
