"""What the model does with images of species it calls ``Other``.

Those are species it has no class for: bundled (too few training images) or
absent from the hierarchy. The hoped-for answer is ``Other`` at species rank;
anything else puts a trained name on a species the model never learned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OtherSpecies", "OtherSummary", "summarise_other"]


@dataclass(frozen=True)
class OtherSpecies:
    """The images of one data species outside the model's classes."""

    species: str
    images: int
    called_other: int
    commonest_prediction: str
    commonest_count: int
    rolled_up: dict[str, int]


@dataclass(frozen=True)
class OtherSummary:
    """Images whose true species class is ``Other``, and known species called ``Other``.

    Attributes:
        images: readable images of species outside the model's classes.
        called_other: of those, how many the species head calls ``Other``.
        rolled_up: the rolled-up answers given to them, answer -> images.
        known_called_other: images of trained species the species head calls ``Other``.
        per_species: one entry per data species, most images first.
    """

    images: int
    called_other: int
    rolled_up: dict[str, int]
    known_called_other: int
    per_species: list[OtherSpecies] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "called_other": self.called_other,
            "rolled_up": self.rolled_up,
            "known_called_other": self.known_called_other,
            "per_species": [vars(s) for s in self.per_species],
        }


def summarise_other(
    data_species: np.ndarray,
    targets: np.ndarray,
    pred: np.ndarray,
    answers: np.ndarray,
    species_names: list[str],
) -> OtherSummary:
    """Summarise the rows of unknown species (index 0 is ``Other``).

    Args:
        data_species: the data's species label per row.
        targets: the true species class per row (0 for ``Other``).
        pred: the species head's top-1 per row.
        answers: the rolled-up answer per row (as a string).
        species_names: the species classes.
    """
    unknown = targets == 0
    per_species = []
    for name in np.unique(data_species[unknown]):
        rows = unknown & (data_species == name)
        predicted = Counter(pred[rows].tolist())
        top, top_count = predicted.most_common(1)[0]
        per_species.append(
            OtherSpecies(
                species=str(name),
                images=int(rows.sum()),
                called_other=int(predicted.get(0, 0)),
                commonest_prediction=species_names[top],
                commonest_count=int(top_count),
                rolled_up=_counts(answers[rows]),
            )
        )
    per_species.sort(key=lambda s: (-s.images, s.species))
    return OtherSummary(
        images=int(unknown.sum()),
        called_other=int(np.sum(unknown & (pred == 0))),
        rolled_up=_counts(answers[unknown]),
        known_called_other=int(np.sum(~unknown & (pred == 0))),
        per_species=per_species,
    )


def _counts(values: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in Counter(values.tolist()).most_common()}
