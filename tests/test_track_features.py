"""moths-infer --features: each detection's feature vector, row-aligned with detections.csv.

The grid detector (helpers/onnx_detectors.py) boxes exactly the bright cells
painted on a frame; the oracle for a row's vector is the tiny classifier's
``features`` output run here, with ONNX Runtime directly, on the crop cut by hand.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers.onnx_detectors import grid_detector, paint_cells, save_frame, sheet
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata
from PIL import Image

from moths_framework.cli.infer import main
from moths_framework.inference import OnnxClassifier


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grid_detector(tmp_path_factory.mktemp("det") / "grid.onnx")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cls") / "tiny.onnx"
    return export_model(tiny_net(), path, classifier_metadata())


def run(*args: object) -> int:
    return main(["--no-progress", *[str(a) for a in args]])


def features_by_hand(model: Path, crop: Image.Image) -> np.ndarray:
    """The model's ``features`` output for one crop, preprocessed as the classifier does."""
    batch = OnnxClassifier.from_file(model).preprocess(crop)[None]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"image": batch})[0][0]


def test_one_vector_per_row_nan_without_a_crop(detector, classifier, tmp_path) -> None:
    frames = tmp_path / "night"
    frames.mkdir()
    two = paint_cells(sheet(), {(3, 3): 240, (12, 6): 180})
    save_frame(frames / "a_two.png", two)
    save_frame(frames / "b_empty.png", sheet())
    (frames / "c_broken.jpg").write_bytes(b"not a jpeg")
    one = paint_cells(sheet(), {(7, 2): 220})
    save_frame(frames / "d_one.png", one)
    out, features = tmp_path / "d.csv", tmp_path / "f.npy"
    args = ["--model", classifier, "--output", out, "--features", features]
    assert run("--detector", detector, frames, *args) == 0
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    vectors = np.load(features)
    assert vectors.dtype == np.float32 and vectors.shape[0] == len(rows) == 5
    has_box = [row["detection"] != "" for row in rows]
    assert has_box == [True, True, False, False, True]
    assert np.isnan(vectors[2]).all() and np.isnan(vectors[3]).all()
    cuts = {  # grid cell (column, row) -> its 32 x 48 pixels on the 640 x 480 frame
        0: two[144:192, 96:128], 1: two[288:336, 384:416], 4: one[96:144, 224:256],
    }  # fmt: skip
    for row, pixels in cuts.items():
        expected = features_by_hand(classifier, Image.fromarray(pixels))
        np.testing.assert_allclose(vectors[row], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])  # two different crops


def test_features_need_the_classifier_and_a_known_format(detector, classifier, tmp_path, capsys):
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3)]))
    out = tmp_path / "d.csv"
    assert run("--detector", detector, frame, "--output", out, "--features", "f.npy") == 2
    assert "add --model" in capsys.readouterr().err
    args = ["--model", classifier, "--output", out, "--features", tmp_path / "f.txt"]
    assert run("--detector", detector, frame, *args) == 2
    assert "name a .npy or .parquet file" in capsys.readouterr().err
    assert run(frame, "--model", classifier, "--output", out, "--features", "f.npy") == 2
    assert "--features work on trap frames" in capsys.readouterr().err


def test_parquet_without_pyarrow_is_one_line(detector, classifier, tmp_path, capsys) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3)]))
        args = ["--model", classifier, "--output", tmp_path / "d.csv"]
        assert run("--detector", detector, frame, *args, "--features", tmp_path / "f.parquet") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Parquet needs pyarrow" in err[0]
    else:
        frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3), (9, 9)]))
        args = ["--model", classifier, "--output", tmp_path / "d.csv"]
        assert run("--detector", detector, frame, *args, "--features", tmp_path / "f.parquet") == 0
        from moths_framework.inference.feature_file import read_features

        assert read_features(tmp_path / "f.parquet").shape[0] == 2
