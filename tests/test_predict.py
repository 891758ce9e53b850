"""moths-predict: a prediction folder from a checkpoint, one row per image, in order."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import TEST_DATA

from moths_framework.cli.predict import main as predict
from moths_framework.data.transforms import FileTransform, eval_transform
from moths_framework.evaluate.folder_writer import PREDICTIONS_CSV
from moths_framework.model.rebuild import load_classifier


def read_rows(folder) -> list[dict[str, str]]:
    with open(folder / PREDICTIONS_CSV, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def run_args(run, *extra: str) -> list[str]:
    return ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt"), *extra]


@pytest.fixture
def new_folder(tmp_path):
    """A labelled folder the model never saw: 3 readable images and a broken one."""
    root = tmp_path / "new"
    copies = {"Aglais io": "source_a/Aglais io/1.jpg",
              "Pieris rapae": "source_b/Pieris rapae/3.png",
              "Vanessa atalanta": "source_a/Aglais io/2.jpg"}  # fmt: skip
    for species, image in copies.items():
        (root / species).mkdir(parents=True)
        shutil.copy(TEST_DATA / image, root / species / Path(image).name)
    (root / "Aglais io" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def test_predict_writes_the_test_split_beside_the_checkpoint(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert predict(run_args(run)) == 0
    out = run / "predictions" / "test"
    assert f"wrote {out}" in capsys.readouterr().out
    assert {"predictions.csv", "outputs.npz", "hierarchy.json"} <= {p.name for p in out.iterdir()}
    split = torch.load(run / "best.ckpt", weights_only=False)["moths"]["data"]["split"]
    rows = read_rows(out)
    assert len(rows) == split["test"] and not any(row["error"] for row in rows)


def test_a_new_folder_is_predicted_whole_with_an_error_row_for_a_broken_image(
    tiny_run, new_folder, tmp_path, capsys
):
    out = tmp_path / "pred"
    source = ["--data.source.class_path", "ImageFolder", "--data.source.init_args.root",
              str(new_folder), "--output", str(out), "--images-by-prediction", "true"]  # fmt: skip
    assert predict(run_args(tiny_run, *source)) == 0
    assert "split 'all'" in capsys.readouterr().out  # not the training source: every image
    rows = read_rows(out)
    images = sorted(p for p in new_folder.rglob("*") if p.is_file())
    assert sorted(row["path"] for row in rows) == sorted(map(str, images))
    (broken,) = [row for row in rows if row["path"].endswith("broken.jpg")]
    assert "broken.jpg" in broken["error"] and broken["pred_species"] == ""
    vanessa = next(row for row in rows if row["species"] == "Vanessa atalanta")
    assert vanessa["true_species"] == "Other"  # not a class of the checkpoint

    outputs = np.load(out / "outputs.npz", allow_pickle=False)
    assert list(outputs["paths"]) == [row["path"] for row in rows]
    row = [row["path"] for row in rows].index(str(broken["path"]))
    assert np.isnan(outputs["logits_species"][row]).all()
    # each row holds the logits of its own image: recompute one without the framework's loader
    model = load_classifier(tiny_run / "best.ckpt")
    good = next(i for i, r in enumerate(rows) if not r["error"])
    # the data module's decode (a JPEG at reduced scale when that covers the resize)
    x = FileTransform(eval_transform(model.preprocessing))(rows[good]["path"])[None]
    with torch.no_grad():
        logits, features = model.net.forward_with_features(x)
    np.testing.assert_allclose(outputs["logits_species"][good], logits[0][0].numpy(), atol=1e-4)
    np.testing.assert_allclose(outputs["features"][good], features[0].numpy(), atol=1e-4)
    # --images-by-prediction: one link per readable image, in its predicted species' folder
    entries = list((out / "images").rglob("*"))
    links = [p for p in entries if p.is_symlink()]
    assert all(p.is_symlink() or p.is_dir() for p in entries)
    readable = [r for r in rows if not r["error"]]
    assert len(links) == len(readable) == len(images) - 1  # all but broken.jpg
    link_of = {os.readlink(link): link for link in links}
    for r in readable:
        link = link_of[os.path.abspath(r["path"])]
        assert link.parent == out / "images" / r["pred_species"], (link, r["pred_species"])
        named = "correct " if r["pred_species"] == r["true_species"] else "wrong "
        assert link.name.startswith(named + Path(r["path"]).stem) and link.is_file()


def test_predict_without_a_checkpoint_is_one_line(tiny_run, capsys):
    assert predict(["--config", str(tiny_run / "config.yaml")]) == 2
    assert "moths-predict needs a trained model: --ckpt_path" in capsys.readouterr().err


def test_predict_leaves_a_folder_it_did_not_write_alone(tiny_run, tmp_path, capsys):
    """moths-infer's README writes predictions.csv into a project folder: moths-predict
    --output there must not take the project with it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "predictions.csv").write_text("path\n")
    (project / "source.py").write_text("print('mine')\n")
    assert predict(run_args(tiny_run, "--output", str(project))) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-predict: error: ") and err.count("\n") == 1
    assert str(project) in err and "source.py" in err
    assert sorted(p.name for p in project.iterdir()) == ["predictions.csv", "source.py"]
    assert (project / "source.py").read_text() == "print('mine')\n"
