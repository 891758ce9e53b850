"""Data sources, the stratified split, weighted sampling and broken images at training time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.sources import (
    DataSourceError,
    ImageFolder,
    ImageFolders,
    Manifest,
    Sample,
)
from moths_framework.data.split import sampling_weights, stratified_split
from moths_framework.hierarchy import CsvHierarchy


def samples(counts: dict[str, int]) -> list[Sample]:
    return [Sample(Path(f"{s}/{i}.jpg"), s) for s, n in counts.items() for i in range(n)]


def test_image_folder_skips_hidden_and_non_images(tmp_path):
    (tmp_path / "Aglais io").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "Aglais io" / "1.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "Aglais io" / "2.PNG")
    (tmp_path / "Aglais io" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "Aglais io" / "notes.txt").write_text("x")
    (tmp_path / ".trash").mkdir()
    (tmp_path / "README.txt").write_text("x")
    found = ImageFolder(tmp_path).samples()
    assert [(s.path.name, s.species) for s in found] == [
        ("1.jpg", "Aglais io"),
        ("2.PNG", "Aglais io"),
    ]


def test_image_folders_merge_species_and_manifest_reads_prepare_output(test_data, prepared):
    merged = ImageFolders([test_data / "source_a", test_data / "source_b"]).species_counts()
    assert merged["Pammene rhediella"] == 31  # 18 + 12 + the byte-identical duplicate
    manifest = Manifest(prepared / "manifest.csv").samples()
    counts = Counter(s.species for s in manifest)
    assert counts["Pammene rhediella"] == 30 and counts["Biston betularia"] == 4
    assert all(s.path.is_file() for s in manifest)


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist.*moths-prepare"):
        ImageFolder(tmp_path / "nope").samples()
    with pytest.raises(DataSourceError, match="not found"):
        Manifest(tmp_path / "manifest.csv").samples()


def test_split_is_stratified_and_reproducible():
    data = samples({"a": 100, "b": 40, "c": 7, "d": 3, "e": 2, "f": 1})
    split = stratified_split(data, 0.15, seed=1)
    assert sorted(split.train + split.val + split.test) == list(range(len(data)))
    per = {name: Counter(data[i].species for i in getattr(split, name)) for name in ("val", "test")}
    # each image by its own hash: about test_fraction of a species (tests/test_split.py)
    assert 5 <= per["val"]["a"] <= 25 and 5 <= per["test"]["a"] <= 25
    # every species with >= 3 images is evaluated
    assert all(per[phase][s] >= 1 for phase in per for s in "abcd")
    # rarer ones stay in training only
    assert per["val"]["e"] == per["val"]["f"] == per["test"]["e"] == per["test"]["f"] == 0
    assert stratified_split(data, 0.15, seed=1) == split
    assert stratified_split(data, 0.15, seed=2) != split


def test_adding_a_species_leaves_the_others_split_alone():
    before = samples({"a": 50, "b": 20})
    after = samples({"a": 50, "b": 20, "aa": 30})
    s1, s2 = stratified_split(before, 0.2, 3), stratified_split(after, 0.2, 3)
    val1 = {str(before[i].path) for i in s1.val}
    val2 = {str(after[i].path) for i in s2.val if after[i].species != "aa"}
    assert val1 == val2


def test_sampling_weights_follow_the_exponent():
    classes = [0] * 90 + [1] * 10
    flat = sampling_weights(classes, 0.0)
    assert set(flat) == {1.0}
    balanced = sampling_weights(classes, 1.0)
    assert sum(balanced[:90]) == pytest.approx(sum(balanced[90:]))
    half = sampling_weights(classes, 0.5)
    assert half[95] / half[0] == pytest.approx(3.0)  # sqrt(90 / 10)


def datamodule(manifest: Path, test_data: Path, **kwargs) -> MothsDataModule:
    return MothsDataModule(
        source=Manifest(manifest),
        hierarchy=CsvHierarchy(test_data / "hierarchy.csv"),
        min_samples=5,
        batch_size=8,
        **kwargs,
    )


def test_targets_cover_every_rank_and_other(prepared, test_data):
    dm = datamodule(prepared / "manifest.csv", test_data)
    h = dm.hierarchy
    assert h.bundled == ("Biston betularia", "Zygaena exulans")
    by_species = {s.species: t for s, t in zip(dm.samples, dm.targets, strict=True)}
    assert by_species["Zygaena exulans"] == (0, 0, 0, 0)
    noctua = by_species["Noctua comes"]
    assert [h.classes(r)[i] for r, i in zip(h.ranks, noctua, strict=True)] == [
        "Noctua comes", "macro", "Noctuidae", "Noctua"]  # fmt: skip
    dm.setup("fit")
    images, targets, skipped = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 224, 224) and targets.shape[1] == 4 and skipped == 0


def test_weighted_sampling_balances_species(prepared, test_data):
    dm = datamodule(prepared / "manifest.csv", test_data, weighted_sampling=True,
                    weighted_sampling_fraction=1.0)  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    sampler = loader.sampler
    torch.manual_seed(0)
    draws = [i for _ in range(50) for i in sampler]
    drawn = Counter(dm.targets[dm.split.train[i]][0] for i in draws)
    assert len(drawn) == len(dm.hierarchy.classes("species"))
    assert max(drawn.values()) / min(drawn.values()) < 1.3  # balanced, Other included
    plain = Counter(dm.targets[i][0] for i in dm.split.train)
    assert max(plain.values()) / min(plain.values()) > 1.3  # the data itself is not


def test_an_image_broken_after_prepare_is_skipped_and_counted(tmp_path, test_data):
    for i in range(6):
        for species in ("Aglais io", "Pieris rapae"):
            folder = tmp_path / species
            folder.mkdir(exist_ok=True)
            Image.new("RGB", (40, 40), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "Aglais io" / "0.png").write_bytes(b"\x89PNG broken")
    dm = MothsDataModule(ImageFolder(tmp_path), CsvHierarchy(test_data / "hierarchy.csv"),
                         batch_size=64, test_fraction=0.0)  # fmt: skip
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sum(b[2] for b in batches) == 1
    assert sum(len(b[0]) for b in batches) == 11


def test_split_sizes_and_class_counts_are_logged(prepared, test_data, caplog):
    caplog.set_level("INFO", logger="moths_framework.data.datamodule")
    datamodule(prepared / "manifest.csv", test_data).setup("fit")
    assert "split 226 images of 9 species: train 147, val 39, test 40" in caplog.text
    assert "training images per species: 2 (Biston betularia) to 24" in caplog.text
    assert "bundled into Other: Biston betularia, Zygaena exulans" in caplog.text


def test_folder_names_in_either_unicode_form_are_one_species(tmp_path):
    import unicodedata

    name = "Aglais io é"
    for i, form in enumerate(("NFC", "NFD")):
        folder = tmp_path / f"root{i}" / (unicodedata.normalize(form, name) + " ")
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "1.png")
    counts = ImageFolders([tmp_path / "root0", tmp_path / "root1"]).species_counts()
    assert counts == {unicodedata.normalize("NFC", name): 2}


def test_manifest_species_are_nfc_and_its_sha256_is_the_split_identity(tmp_path):
    import unicodedata

    name = "Zygène d’été"
    (tmp_path / "manifest.csv").write_text(
        "path,species,sha256\n"
        f"a/1.jpg,{unicodedata.normalize('NFD', name)} ,abc\n"
        f"a/2.jpg,{name},\n",
        encoding="utf-8",
    )
    first, second = Manifest(tmp_path / "manifest.csv").samples()
    assert first.species == second.species == name
    assert (first.identity, first.split_identity) == ("abc", "abc")
    assert (second.identity, second.split_identity) == (None, "a/2.jpg")


def test_a_species_without_training_images_is_warned_about(tmp_path, test_data, caplog):
    from moths_framework.data.split import hash_position

    # Three names whose hashes all fall in val or test under the default seed 42.
    names = [n for n in (f"{i}.png" for i in range(200))
             if hash_position(42, f"Aglais io/{n}") < 0.3][:3]  # fmt: skip
    for species, files in (("Aglais io", names), ("Pieris rapae", ["1.png", "2.png"])):
        (tmp_path / species).mkdir()
        for file in files:
            Image.new("RGB", (8, 8)).save(tmp_path / species / file)
    dm = MothsDataModule(ImageFolder(tmp_path), CsvHierarchy(test_data / "hierarchy.csv"))
    dm.setup("fit")
    assert not [i for i in dm.split.train if dm.samples[i].species == "Aglais io"]
    assert "species with no training image: Aglais io" in caplog.text
