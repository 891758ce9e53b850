"""Roll-up thresholds written as text: ``species=0.6,genus=0.5``.

One syntax for every place a person types them: ``moths-infer --thresholds``
and the ``thresholds`` field of a multipart ``/v1/classify`` request. Which
ranks exist is the model's to say (:class:`~moths_framework.inference.OnnxClassifier`
checks that when it is built); this module checks only the text.
"""

from __future__ import annotations

__all__ = ["parse_thresholds"]


def parse_thresholds(text: str) -> dict[str, float]:
    """``"species=0.6, genus=0.5"`` -> ``{"species": 0.6, "genus": 0.5}``.

    Items are separated by commas; blank items and spaces around them are
    ignored, so ``""`` gives ``{}``. A rank given twice keeps its last value.

    Raises:
        ValueError: an item that is not ``RANK=PROBABILITY`` (no ``=``, no rank,
            a value that is not a number), or a probability outside [0, 1].
            The message names the item; callers put their option's name in front.
    """
    thresholds = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        rank, sep, value = (part.strip() for part in item.partition("="))
        try:
            if not sep or not rank:
                raise ValueError(item)
            probability = float(value)
        except ValueError:
            raise ValueError(f"expected RANK=PROBABILITY, got {item!r}") from None
        if not 0.0 <= probability <= 1.0:  # NaN fails too
            raise ValueError(f"threshold of {rank!r} must be in [0, 1], got {value}")
        thresholds[rank] = probability
    return thresholds
