"""The model file contract: what ``moths-export`` writes into an ONNX file and inference reads.

An exported model has

- one input ``image``: float32 ``[N, 3, H, W]``, already normalised (see
  :class:`~moths_framework.preprocessing.Preprocessing`), dynamic batch axis ``N``;
- one output per rank, named by the rank (``species``, ``group``, ...): float32
  logits ``[N, num_classes(rank)]``; optionally an output ``features`` ``[N, F]``;
- string ``metadata_props``: the keys of :class:`ModelMetadata` below;
  ``moths.calibration`` and ``moths.novelty`` only once ``moths-calibrate`` ran.

A detector's file says ``moths.task = detection`` and follows another contract
(:mod:`moths_framework.inference.detector_metadata`); a classifier's has no
``moths.task`` (or ``classification``).

No torch import: this module is read on production boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.preprocessing import Preprocessing

__all__ = [
    "FEATURES_OUTPUT",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "CALIBRATION_KEY",
    "HIERARCHY_KEY",
    "INPUT_NAME",
    "MODEL_CARD_KEY",
    "NOVELTY_KEY",
    "PRECISION_KEY",
    "PRECISION_VALUES",
    "PREPROCESSING_KEY",
    "TASK_KEY",
    "TEMPERATURE_KEY",
    "ModelFormatError",
    "ModelMetadata",
]

INPUT_NAME = "image"
FEATURES_OUTPUT = "features"
FORMAT_KEY = "moths.format"
FORMAT_VERSION = "1"
HIERARCHY_KEY = "moths.hierarchy"
PREPROCESSING_KEY = "moths.preprocessing"
MODEL_CARD_KEY = "moths.model_card"
TEMPERATURE_KEY = "moths.temperature"
PRECISION_KEY = "moths.precision"  # how the weights are stored; older files: fp32
PRECISION_VALUES = ("fp32", "fp16", "int8")
CALIBRATION_KEY = "moths.calibration"  # thresholds, roll-up method, tau, calibration report
NOVELTY_KEY = "moths.novelty"  # the novelty detector's statistics (large: kept apart)
TASK_KEY = "moths.task"  # "detection" for a detector; absent (or "classification"): a classifier
CLASSIFICATION = "classification"
_REQUIRED_KEYS = (FORMAT_KEY, HIERARCHY_KEY, PREPROCESSING_KEY, MODEL_CARD_KEY, TEMPERATURE_KEY)


class ModelFormatError(ValueError):
    """A model file does not follow the contract; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelMetadata:
    """Everything a model file carries besides its weights.

    Attributes:
        hierarchy: the classes of every output, in output order.
        preprocessing: how an RGB image becomes the ``image`` input.
        model_card: free-form facts (backbone, metrics, export date, ...).
        temperature: per-rank softmax temperature, ``softmax(logits / T)``; ranks
            not given get 1.0 (uncalibrated), so after construction every rank has one.
        precision: how the weights are stored: ``fp32``, ``fp16`` or ``int8``
            (``moths.precision``; files exported before it existed read as ``fp32``).
        calibration: what ``moths-calibrate`` chose (``thresholds``, ``rollup``,
            ``tau``, ...); empty for an uncalibrated model.
        novelty: the novelty detector's JSON form
            (:meth:`~moths_framework.inference.novelty_score.NoveltyDetector.to_json`), or ``None``.
    """

    hierarchy: LabelHierarchy
    preprocessing: Preprocessing
    model_card: dict[str, Any] = field(default_factory=dict)
    temperature: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_VALUES:
            raise ValueError(
                f"{PRECISION_KEY} must be one of {', '.join(PRECISION_VALUES)}, "
                f"got {self.precision!r}"
            )
        unknown = sorted(set(self.temperature) - set(self.hierarchy.ranks))
        if unknown:
            raise ValueError(
                f"temperature given for unknown rank(s) {', '.join(unknown)}; "
                f"the ranks are {', '.join(self.hierarchy.ranks)}"
            )
        for rank, value in self.temperature.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"temperature of {rank!r} must be positive, got {value!r}")
        # Every rank written out, so the file says 1.0 (uncalibrated) rather than nothing.
        given = self.temperature
        temperature = {rank: float(given.get(rank, 1.0)) for rank in self.hierarchy.ranks}
        object.__setattr__(self, "temperature", temperature)

    def temperature_of(self, rank: str) -> float:
        """The softmax temperature of ``rank`` (1.0 when not calibrated)."""
        return self.temperature[rank]

    @property
    def calibrated_thresholds(self) -> dict[str, float]:
        """Roll-up thresholds chosen by ``moths-calibrate`` (empty when not calibrated)."""
        return {r: float(t) for r, t in self.calibration.get("thresholds", {}).items()}

    @property
    def rollup_method(self) -> str | None:
        """The calibrated roll-up method, or ``None`` (independent heads, uncalibrated)."""
        return self.calibration.get("rollup", {}).get("method")

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of an ONNX file, as string key -> string value."""
        props = {
            FORMAT_KEY: FORMAT_VERSION,
            HIERARCHY_KEY: self.hierarchy.to_json(),
            PREPROCESSING_KEY: self.preprocessing.to_json(),
            MODEL_CARD_KEY: json.dumps(self.model_card, ensure_ascii=False, sort_keys=True),
            TEMPERATURE_KEY: json.dumps(self.temperature, sort_keys=True),
            PRECISION_KEY: self.precision,
        }
        if self.calibration:
            props[CALIBRATION_KEY] = json.dumps(self.calibration, ensure_ascii=False)
        if self.novelty is not None:
            props[NOVELTY_KEY] = json.dumps(self.novelty, separators=(",", ":"))
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> ModelMetadata:
        """Read the metadata written by :meth:`to_props`.

        Args:
            props: the model's ``metadata_props`` (ONNX Runtime:
                ``session.get_modelmeta().custom_metadata_map``).
            source: the model file, named in error messages.

        Raises:
            ModelFormatError: the model was not exported by ``moths-export``, has
                another format version, or a key is missing or unreadable.
        """
        if not any(key.startswith("moths.") for key in props):
            raise ModelFormatError(
                f"{source} was not exported by moths-export: it has no moths.* metadata "
                f"(expected keys {', '.join(_REQUIRED_KEYS)})"
            )
        task = props.get(TASK_KEY, CLASSIFICATION)
        if task != CLASSIFICATION:
            hint = "; open it as a detector (OnnxDetector, moths-infer --detector)"
            raise ModelFormatError(
                f"{source} is a {task} model ({TASK_KEY} = {task}), not a classifier"
                + (hint if task == "detection" else "")
            )
        missing = [key for key in _REQUIRED_KEYS if key not in props]
        if missing:
            raise ModelFormatError(
                f"{source} was not exported by moths-export: metadata key(s) "
                f"{', '.join(missing)} missing"
            )
        if props[FORMAT_KEY] != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source} has {FORMAT_KEY}={props[FORMAT_KEY]!r}; this moths-framework reads "
                f"format {FORMAT_VERSION}: install the version that exported it, or re-export"
            )
        try:
            return cls(
                hierarchy=LabelHierarchy.from_json(props[HIERARCHY_KEY]),
                preprocessing=Preprocessing.from_json(props[PREPROCESSING_KEY]),
                model_card=_json_object(props, MODEL_CARD_KEY),
                temperature=_json_object(props, TEMPERATURE_KEY),
                calibration=_json_object(props, CALIBRATION_KEY)
                if CALIBRATION_KEY in props
                else {},
                novelty=_json_object(props, NOVELTY_KEY) if NOVELTY_KEY in props else None,
                precision=props.get(PRECISION_KEY, "fp32"),
            )
        except (ValueError, TypeError, KeyError) as error:
            # json.JSONDecodeError and HierarchyError are ValueErrors too.
            raise ModelFormatError(f"{source}: unreadable moths metadata: {error}") from error


def _json_object(props: Mapping[str, str], key: str) -> dict[str, Any]:
    value = json.loads(props[key])
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a JSON object, got {type(value).__name__}")
    return value
