"""parse_thresholds: the one reader of ``species=0.6,genus=0.5`` (moths-infer and moths-serve)."""

from __future__ import annotations

import pytest

from moths_framework.inference.thresholds import parse_thresholds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        (" , ,", {}),
        ("species=0.6", {"species": 0.6}),
        (" species = 0.6 , genus=0.5,", {"species": 0.6, "genus": 0.5}),
        ("species=0,family=1", {"species": 0.0, "family": 1.0}),
        ("species=0.2,species=0.7", {"species": 0.7}),  # the last one wins
        ("kingdom=0.5", {"kingdom": 0.5}),  # ranks are the model's to check
    ],
)
def test_parses_rank_probability_items(text: str, expected: dict[str, float]) -> None:
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("species:0.5", "expected RANK=PROBABILITY, got 'species:0.5'"),
        ("species=0.5,genus", "expected RANK=PROBABILITY, got 'genus'"),
        ("=0.5", "expected RANK=PROBABILITY, got '=0.5'"),
        ("species=", "expected RANK=PROBABILITY, got 'species='"),
        ("species=high", "expected RANK=PROBABILITY, got 'species=high'"),
        ("species=1.5", "threshold of 'species' must be in [0, 1], got 1.5"),
        ("genus=-0.1", "threshold of 'genus' must be in [0, 1], got -0.1"),
        ("species=nan", "threshold of 'species' must be in [0, 1], got nan"),
        ("species=inf", "threshold of 'species' must be in [0, 1], got inf"),
    ],
)
def test_refuses_what_is_not_a_probability_per_rank(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_thresholds(text)
    assert str(raised.value) == message
