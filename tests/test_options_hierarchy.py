"""moths-hierarchy --json by its effect: the JSON form of the very hierarchy the
summary describes (data counts and --min-samples applied), and nothing else on stdout."""

from __future__ import annotations

import json

import pytest
from helpers.paths import TEST_DATA

from moths_framework.cli.hierarchy import main
from moths_framework.data.sources import ImageFolder
from moths_framework.hierarchy import CsvHierarchy, LabelHierarchy

CSV = TEST_DATA / "hierarchy.csv"
SOURCE = TEST_DATA / "source_a"


def test_json_is_the_hierarchy_of_the_csv_and_the_data(capsys: pytest.CaptureFixture[str]):
    assert main([str(CSV), "--data", str(SOURCE), "--min-samples", "5", "--json"]) == 0
    out = capsys.readouterr().out
    json.loads(out)  # all of stdout is one JSON document
    counts = dict(ImageFolder(SOURCE).species_counts())
    expected = CsvHierarchy(CSV).build(counts, 5)
    assert out.strip() == expected.to_json()
    printed = LabelHierarchy.from_json(out)
    assert printed == expected
    # docs/commands/hierarchy.md's example, as JSON: 6 / 4 / 4 / 5 classes, Biston bundled
    assert printed.num_classes() == {"species": 6, "group": 4, "family": 4, "genus": 5}
    assert list(printed.bundled) == ["Biston betularia"]


def test_json_follows_min_samples(capsys: pytest.CaptureFixture[str]) -> None:
    printed = []
    for min_samples in ("0", "25"):
        assert main([str(CSV), "--data", str(SOURCE), "--min-samples", min_samples, "--json"]) == 0
        printed.append(LabelHierarchy.from_json(capsys.readouterr().out))
    every, common = printed
    assert "Biston betularia" in every.classes("species") and not every.bundled
    assert "Biston betularia" in common.bundled
    assert common.num_classes()["species"] < every.num_classes()["species"]
