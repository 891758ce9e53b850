"""The split stays put as images come and go: property tests over random additions/removals."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from moths_framework.data.sources import Sample
from moths_framework.data.split import stratified_split

FRACTION = 0.15


def phases(images: list[Sample], seed: int = 7, fraction: float = FRACTION) -> dict[Sample, str]:
    split = stratified_split(images, fraction, seed)
    return {images[i]: phase for phase in ("train", "val", "test") for i in getattr(split, phase)}


def species_sizes(images: list[Sample]) -> Counter[str]:
    return Counter(s.species for s in images)


class Collection:
    """A growing and shrinking set of images of a few species, as nightly runs see it."""

    def __init__(self, rng: random.Random, species: int) -> None:
        self.rng = rng
        self.names = [f"Species {k}" for k in range(species)]
        self.images: list[Sample] = []
        self.made = 0

    def add(self) -> None:
        for _ in range(self.rng.choice([1, 1, 2, 5, 20])):
            name = self.rng.choice(self.names)
            self.made += 1
            self.images.append(Sample(Path(f"data/{name}/{self.made}.jpg"), name))
        self.rng.shuffle(self.images)  # the order a source lists them in must not matter

    def remove(self) -> None:
        for _ in range(min(len(self.images), self.rng.choice([1, 1, 3, 10]))):
            self.images.remove(self.rng.choice(self.images))


def assert_minimums(images: list[Sample], now: dict[Sample, str]) -> None:
    sizes = species_sizes(images)
    for species, n in sizes.items():
        got = Counter(now[s] for s in images if s.species == species)
        if n >= 3:
            assert got["val"] >= 1 and got["test"] >= 1, (species, n, got)
        else:
            assert got == {"train": n}, (species, n, got)


@pytest.mark.parametrize("seed", range(6))
def test_additions_never_move_a_training_image_and_removals_never_an_evaluation_one(seed):
    rng = random.Random(seed)
    data = Collection(rng, species=4)
    before_images, before = [], {}
    moved_total = 0
    for _ in range(120):
        adding = not data.images or rng.random() < 0.7
        data.add() if adding else data.remove()
        now = phases(data.images)
        assert_minimums(data.images, now)
        old_sizes, sizes = species_sizes(before_images), species_sizes(data.images)
        moved_per_species: Counter[str] = Counter()
        for image in set(before) & set(now):
            crossing = min(old_sizes[image.species], sizes[image.species]) < 3
            if before[image] == now[image] or crossing:
                continue  # a species crossing 3 images splits afresh (train-only below)
            moved_per_species[image.species] += 1
            if adding:
                assert before[image] != "train", f"{image} left train when images were added"
            else:
                assert now[image] != "train", f"{image} joined train when images were removed"
        # Only the (at most two) images adjusted to fill an empty val/test, before or after, move.
        assert all(m <= 4 for m in moved_per_species.values()), moved_per_species
        moved_total += sum(moved_per_species.values())
        assert all(sizes[s] >= 1 for s in moved_per_species)
        before_images, before = list(data.images), now
    # Moves are rare exceptions, not the rule: a reshuffle would move hundreds.
    assert moved_total < 40


@pytest.mark.parametrize("seed", range(4))
def test_every_image_sits_where_its_hash_says_except_at_most_two_per_species(seed):
    from moths_framework.data.split import hash_position

    def own_phase(image: Sample) -> str:
        u = hash_position(7, image.split_identity)
        return "val" if u < FRACTION else "test" if u < 2 * FRACTION else "train"

    rng = random.Random(100 + seed)
    data = Collection(rng, species=6)
    before: dict[Sample, str] = {}
    for _ in range(80):
        data.add() if not data.images or rng.random() < 0.7 else data.remove()
        now = phases(data.images)
        sizes = species_sizes(data.images)
        adjusted = {s for s in data.images if now[s] != own_phase(s) and sizes[s.species] >= 3}
        for species in {s.species for s in adjusted}:
            own = Counter(own_phase(s) for s in data.images if s.species == species)
            assert sum(s.species == species for s in adjusted) <= 2
            assert own["val"] == 0 or own["test"] == 0, "adjusted although val and test were full"
        for image in set(before) & set(now):
            was_adjusted = before[image] != own_phase(image)
            if before[image] != now[image]:
                assert was_adjusted or image in adjusted or sizes[image.species] < 3
        before = now


def test_adding_one_image_to_a_species_of_100_moves_no_other_image():
    images = [Sample(Path(f"a/{i}.jpg"), "a") for i in range(100)]
    before = phases(images)
    after = phases([*images, Sample(Path("a/100.jpg"), "a")])
    assert {s: after[s] for s in images} == before


def test_fractions_match_test_fraction_in_expectation():
    counts: Counter[str] = Counter()
    for seed in range(40):
        images = [Sample(Path(f"{s}/{i}.jpg"), s) for s in ("a", "b") for i in range(150)]
        counts.update(phases(images, seed=seed).values())
    total = sum(counts.values())  # 12 000 images: the standard error is 0.0033
    assert counts["val"] / total == pytest.approx(FRACTION, abs=0.012)
    assert counts["test"] / total == pytest.approx(FRACTION, abs=0.012)
    # Per species too: a 20-image species averages 3 val images (plus rare adjustments).
    val = [
        Counter(phases([Sample(Path(f"x/{i}.jpg"), "x") for i in range(20)], seed=s).values())
        for s in range(300)
    ]
    assert sum(c["val"] for c in val) / 300 == pytest.approx(20 * FRACTION, abs=0.3)


def test_the_split_follows_identity_not_path_or_order():
    images = [Sample(Path(f"old/{i}.jpg"), "a", identity=f"sha{i}") for i in range(60)]
    renamed = [Sample(Path(f"new/x{i}.png"), "a", identity=f"sha{i}") for i in range(60)]
    split = stratified_split(images, FRACTION, 3)
    assert stratified_split(renamed[::-1], FRACTION, 3) == type(split)(
        *(sorted(59 - i for i in getattr(split, p)) for p in ("train", "val", "test"))
    )
    # Without an identity, the path relative to the species folder's parent is hashed.
    assert Sample(Path("/x/y/Aglais io/3.jpg"), "Aglais io").split_identity == "Aglais io/3.jpg"
    assert stratified_split(images, FRACTION, 4) != split
