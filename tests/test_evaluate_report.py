"""report.html, the command's errors, and comparing two folders."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from helpers.browser import render
from helpers.prediction_folders import write_random_folder
from PIL import Image

from moths_framework.cli.evaluate import main
from moths_framework.evaluate.confusion import most_confused_classes
from moths_framework.hierarchy import LabelHierarchy


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])
        self._heading = tag in ("h1", "h2", "h3")

    def handle_data(self, data):
        if self._heading:
            self.headings.append(data)
            self._heading = False


def _page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_is_self_contained_and_every_image_decodes(tmp_path, capsys):
    written = write_random_folder(tmp_path / "pred", n=120, signal=1.5, unreadable=(7,))
    out = tmp_path / "report"
    assert main([str(written.path), "--output", str(out)]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    written_there = sorted(p.name for p in out.iterdir())  # and the record of what it wrote
    assert written_there == [".moths-output.json", "confusion", "metrics.json", "report.html"]
    page = _page(out / "report.html")
    assert not page.links  # no stylesheet, script or link to fetch
    assert "http" not in (out / "report.html").read_text().replace("http-equiv", "")
    # reliability, coverage, one heatmap per rank, per-family matrices (two families qualify)
    assert len(page.images) >= 2 + len(written.hierarchy.ranks) + 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.width > 100 and image.height > 100
    for heading in (
        "Summary per rank",
        "Roll-up and coverage",
        "Reliability",
        "Rank: species",
        "Species within each family",
        "Species the model calls Other",
        "Unreadable images (first 20)",
    ):
        assert heading in page.headings, heading
    assert any(h.startswith("Most-confused pairs") for h in page.headings)


def test_per_class_table_starts_with_the_worst_f1(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=150, signal=1.0)
    assert main([str(written.path)]) == 0
    classes = json.loads((written.path / "metrics.json").read_text())["ranks"]["genus"]["classes"]
    worst = min(classes.values(), key=lambda c: c["f1"])["f1"]
    text = (written.path / "report.html").read_text()
    section = text[text.index("<h2>Rank: genus</h2>") :]
    table = section[section.index("Per class, worst F1 first") :]
    first_row = re.search(r"<tr><td class=name>([^<]+)</td>", table).group(1)
    assert classes[first_row]["f1"] == worst


def test_large_heads_show_the_60_most_confused_classes(tmp_path):
    species = {f"Genus{i // 4} s{i}": (f"Genus{i // 4}", f"Fam{i // 20}") for i in range(100)}
    hierarchy = LabelHierarchy(("species", "genus", "family"), species)
    rng = np.random.default_rng(1)
    names = [str(s) for s in rng.choice(list(species), 250)]
    written = write_random_folder(tmp_path / "pred", hierarchy=hierarchy, species=names, signal=2.0)
    assert main([str(written.path)]) == 0
    text = (written.path / "report.html").read_text()
    assert "Shown: the 60 most-confused of 101 classes" in text
    full = (written.path / "confusion" / "species.csv").read_text().splitlines()
    assert len(full) == 102 and len(full[0].split(",")) == 102


def test_a_one_rank_folder_evaluates_without_families(tmp_path, capsys):
    """A moth / non-moth filter's predictions: one rank, no family section."""
    hierarchy = LabelHierarchy(("species",), {"moth": (), "nonmoth": ()})
    species = ["moth"] * 30 + ["nonmoth"] * 30
    written = write_random_folder(tmp_path / "pred", hierarchy=hierarchy, species=species)
    assert main([str(written.path)]) == 0
    assert "species          3" in capsys.readouterr().out
    metrics = json.loads((written.path / "metrics.json").read_text())
    assert list(metrics["ranks"]) == ["species"]
    truth = np.array([hierarchy.index("species", s) for s in species])
    expected = float(np.mean(written.logits["species"].argmax(axis=1) == truth))
    assert metrics["ranks"]["species"]["accuracy"] == pytest.approx(expected)
    page = _page(written.path / "report.html")
    assert "Rank: species" in page.headings
    assert not any(h.startswith("Species within each") for h in page.headings)


def test_most_confused_classes_picks_the_classes_in_most_errors():
    confusion = np.diag([50, 50, 50, 50, 50])
    confusion[3, 1] = 7
    confusion[4, 3] = 2
    assert most_confused_classes(confusion, limit=2).tolist() == [1, 3]
    assert most_confused_classes(confusion, limit=9).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.needs_real_parts
def test_report_renders_in_headless_chromium(tmp_path, browser):
    written = write_random_folder(tmp_path / "pred", n=60)
    assert main([str(written.path)]) == 0
    page = render(browser, (written.path / "report.html").as_uri(), screenshot=True)
    assert page.problems() == []
    assert page.images >= 2 + len(written.hierarchy.ranks)  # every figure, decoded
    assert "Summary per rank" in page.text and page.height > 1600
    pixels = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("L"))
    assert pixels.shape == (1600, 1200)
    assert (pixels < 128).mean() > 0.01  # text and figures drawn, not a blank page


def test_missing_or_garbled_folders_are_one_line_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-evaluate: error:") and "no such prediction folder" in err
    assert "\n" not in err
    written = write_random_folder(tmp_path / "pred", n=10)
    (written.path / "outputs.npz").write_bytes(b"not a zip")
    assert main([str(written.path)]) == 2
    assert "outputs.npz: unreadable" in capsys.readouterr().err
    assert main(["a", "b", "c"]) == 2
    assert "two to compare" in capsys.readouterr().err


def test_compare_prints_deltas_and_classes_that_moved(tmp_path, capsys):
    names = write_random_folder(tmp_path / "a", n=200, signal=0.8, seed=3).species
    write_random_folder(tmp_path / "b", species=names, signal=3.0, seed=4, unreadable=(0,))
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "200 shared images (1 unreadable in A or B, left out)" in out
    species_line = next(line for line in out.splitlines() if line.startswith("species "))
    _, metric, before, after, change = species_line.split()
    assert metric == "accuracy" and float(after) > float(before)
    assert float(change) == pytest.approx(float(after) - float(before), abs=2e-4)
    assert "better in B (F1, A -> B):" in out and "worse in B: none" in out


def test_compare_refuses_folders_without_shared_images(tmp_path, capsys):
    write_random_folder(tmp_path / "a", n=10, prefix="/first")
    write_random_folder(tmp_path / "b", n=10, prefix="/second")
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "share no images" in capsys.readouterr().err
