"""``OnnxClassifier``: an exported model on ONNX Runtime, from image files to predictions."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

from moths_framework import zoo
from moths_framework.hierarchy import OTHER, LabelHierarchy
from moths_framework.images import open_rgb
from moths_framework.inference.metadata import (
    FEATURES_OUTPUT,
    INPUT_NAME,
    ModelFormatError,
    ModelMetadata,
)
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.prediction import (
    Prediction,
    check_thresholds,
    roll_up,
    softmax,
    top_k,
)
from moths_framework.inference.preprocess import jpeg_draft_size, preprocess
from moths_framework.inference.providers import EngineSettings, open_session, resolve_providers
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

__all__ = ["ImageInput", "OnnxClassifier"]

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | Image.Image
SpeciesList = str | os.PathLike | Iterable[str]
_PREFETCH_BATCHES = 2  # batches decoded ahead of the model: enough to hide decoding


class _Prepared(NamedTuple):
    source: str
    array: np.ndarray | None
    error: str | None


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
            model runs; default ``min(4, cpu_count)``.
        fast_decode: decode JPEG files at the smallest reduced scale
            (``Image.draft``) that still covers the resize; faster on large
            photos, close to but not bit-equal with the training transform
            (see :func:`.preprocess.jpeg_draft_size`). PIL images are used as given.
        rollup: ``heads``, ``species_sum`` or ``fused`` (see :mod:`.rollup`);
            default: the model's calibrated method, or the independent walk of
            the heads for an uncalibrated model.

    Raises:
        ModelFormatError: the model lacks moths metadata or its inputs/outputs
            do not match it.
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
        fast_decode: bool = False,
        rollup: str | None = None,
    ) -> None:
        props = session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_props(props, source)
        _check_signature(session, self.metadata, source)
        self.session = session
        self.source = source
        given = {**self.metadata.calibrated_thresholds, **(thresholds or {})}
        self.thresholds = check_thresholds(self.hierarchy.ranks, given)
        method = rollup or self.metadata.rollup_method
        self.rollup = check_rollup_method(method) if method is not None else None
        self._ancestry = species_ancestry(self.hierarchy)
        self.novelty = _novelty_detector(session, self.metadata, source)
        self.ranks_by_specificity = self.hierarchy.ranks_by_specificity()
        self._classes = {r: self.hierarchy.classes(r) for r in self.hierarchy.ranks}
        self.mask_mode = check_mask_mode(mask_mode)
        self._masks = (
            allowed_classes(self.hierarchy, read_species_list(species_list))
            if species_list is not None
            else None
        )
        self._other_index = {rank: classes.index(OTHER) for rank, classes in self._classes.items()}
        self._decode_workers = decode_workers or min(4, os.cpu_count() or 1)
        self._draft_size = jpeg_draft_size(self.metadata.preprocessing) if fast_decode else None

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
        fast_decode: bool = False,
        rollup: str | None = None,
        engine: EngineSettings | None = None,
    ) -> OnnxClassifier:
        """Open a model exported by ``moths-export``.

        Args:
            path: the ``.onnx`` file, or ``zoo:ID[@VERSION]`` (fetched into the zoo cache
                and checksum-verified; see :mod:`moths_framework.zoo`).
            providers: ``"auto"`` (TensorRT, CUDA, CPU: the first this ONNX Runtime
                has), or names as a list or comma-separated string. A GPU
                provider that fails to start falls back to CPU with a warning.
            thresholds, species_list, mask_mode, decode_workers, fast_decode, rollup:
                see the class.
            num_threads: ONNX Runtime intra-op threads; default one per physical core.
            engine: TensorRT engine settings (batch size its shape profile is optimised
                for, fp16); default: batch 32, fp16 when the model is fp16.

        Raises:
            FileNotFoundError: no such file.
            ValueError: unknown/unavailable provider, or a file ONNX Runtime cannot load.
            ModelFormatError: not a moths model (a ValueError too).
            ZooError: a ``zoo:`` name that cannot be resolved (a ValueError too).
        """
        path = zoo.resolve(path)  # zoo:ID[@VERSION] -> the verified cached file
        if not Path(path).is_file():
            raise FileNotFoundError(f"model file {os.fspath(path)} not found")
        session = open_session(path, resolve_providers(providers), num_threads, engine)
        return cls(
            session,
            os.fspath(path),
            thresholds=thresholds,
            species_list=species_list,
            mask_mode=mask_mode,
            decode_workers=decode_workers,
            fast_decode=fast_decode,
            rollup=rollup,
        )

    @property
    def hierarchy(self) -> LabelHierarchy:
        """The classes of every rank."""
        return self.metadata.hierarchy

    @property
    def provider(self) -> str:
        """The execution provider that runs the model."""
        return self.session.get_providers()[0]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image as a model input, float32 ``[3, H, W]``."""
        return preprocess(image, self.metadata.preprocessing)

    def logits(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits per rank for a preprocessed batch ``[N, 3, H, W]``."""
        return self._run(batch)[0]

    def model_outputs(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """One model call: raw logits per rank, and the ``features`` output when the model
        has a novelty detector (``None`` otherwise), for :meth:`novelty_scores`."""
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Logits per rank, and the features when the novelty detector needs them."""
        inputs = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        names = [*self.hierarchy.ranks, *([FEATURES_OUTPUT] if self.novelty else [])]
        outputs = self.session.run(names, inputs)
        logits = dict(zip(self.hierarchy.ranks, outputs, strict=False))
        return logits, outputs[-1] if self.novelty else None

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
        pool = ThreadPoolExecutor(self._decode_workers, thread_name_prefix="moths-decode")
        try:
            for batch in self._prepared_batches(pool, images, batch_size):
                yield from self._classify(batch, top_k)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _prepared_batches(
        self, pool: ThreadPoolExecutor, images: Iterable[ImageInput], batch_size: int
    ) -> Iterator[list[_Prepared]]:
        # A bounded window of futures: decoding runs ahead of the model without
        # holding every decoded image of a million-image run in memory.
        pending: deque[Future[_Prepared]] = deque()
        numbered = enumerate(images)
        window = batch_size * (_PREFETCH_BATCHES + 1)

        def refill() -> None:
            for index, image in numbered:
                pending.append(pool.submit(self._prepare, index, image))
                if len(pending) >= window:
                    return

        refill()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            refill()  # queue the next images before the model runs on this batch
            yield batch

    def _prepare(self, index: int, image: ImageInput) -> _Prepared:
        if isinstance(image, Image.Image):
            source = getattr(image, "filename", "") or f"<image {index}>"
        else:
            source = os.fspath(image)
        try:
            # PIL images take the same decode path as files (orientation, alpha, 16-bit).
            rgb = open_rgb(image, draft_size=self._draft_size)
            return _Prepared(source, self.preprocess(rgb), None)
        except Exception as error:  # one bad image must not end a run of a million
            return _Prepared(source, None, str(error) or type(error).__name__)

    def _classify(self, batch: list[_Prepared], k: int) -> list[Prediction]:
        decoded = [item.array for item in batch if item.array is not None]
        probs, scores = {}, None
        if decoded:
            logits, features = self._run(np.stack(decoded))
            probs = self.probabilities_from_logits(logits)
            scores = self.novelty_scores(features) if features is not None else None
        results, row = [], 0
        for item in batch:
            if item.array is None:
                results.append(Prediction(item.source, error=item.error))
                continue
            score = None if scores is None else float(scores[row])
            rows = {r: p[row] for r, p in probs.items()}
            results.append(self._prediction(item.source, rows, k, score))
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


def _novelty_detector(
    session: ort.InferenceSession, metadata: ModelMetadata, source: str
) -> NoveltyDetector | None:
    """The model's novelty detector; ``None`` when it has none or lacks the features output."""
    if metadata.novelty is None:
        return None
    if FEATURES_OUTPUT not in {o.name for o in session.get_outputs()}:
        log.warning(
            "%s has novelty statistics but no %r output (exported with --no-features): "
            "no novelty scores",
            source,
            FEATURES_OUTPUT,
        )
        return None
    try:
        return NoveltyDetector.from_json(metadata.novelty)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFormatError(f"{source}: unreadable novelty statistics: {error}") from error


def _check_signature(session: ort.InferenceSession, metadata: ModelMetadata, source: str) -> None:
    """Check the model's input and outputs against its metadata, so errors name the cause."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if INPUT_NAME not in inputs:
        raise ModelFormatError(
            f"{source} has no input {INPUT_NAME!r} (inputs: {', '.join(inputs)})"
        )
    height, width = metadata.preprocessing.input_size
    shape = inputs[INPUT_NAME]
    expected = [None, 3, height, width]  # None: the batch axis, any size
    if len(shape) != 4 or any(
        isinstance(dim, int) and want is not None and dim != want
        for dim, want in zip(shape, expected, strict=True)
    ):
        raise ModelFormatError(
            f"{source}: input {INPUT_NAME!r} has shape {shape}, the metadata says "
            f"[N, 3, {height}, {width}]"
        )
    outputs = {o.name: o.shape for o in session.get_outputs()}
    for rank, count in metadata.hierarchy.num_classes().items():
        if rank not in outputs:
            raise ModelFormatError(
                f"{source} has no output {rank!r} (outputs: {', '.join(outputs)})"
            )
        dims = outputs[rank]
        if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] != count):
            raise ModelFormatError(
                f"{source}: output {rank!r} has shape {dims}, "
                f"the hierarchy has {count} {rank} classes"
            )
