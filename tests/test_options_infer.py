"""moths-infer's --threads, --providers, --fast-decode and --decode-workers, each by its effect.

An unknown or unavailable --providers name is one line and exit 2 in
test_cli_infer.py (test_usage_errors_exit_2).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers.calling_threads import calling_threads
from PIL import Image, ImageDraw, ImageFilter

from moths_framework.cli.infer import main
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.classifier import default_decode_workers
from moths_framework.inference.providers import CPU, CUDA


def photo_like(path: Path, seed: int, size: tuple[int, int] = (800, 600)) -> Path:
    """A smooth JPEG (gradient, blurred discs): what fast decoding is for, unlike noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size[0], dtype=np.float32)[None, :, None]
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    pixels = np.broadcast_to(start + (end - start) * ramp, (size[1], size[0], 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(20, 200)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
    out = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(2.0)).save(out, "JPEG", quality=90)
    path.write_bytes(out.getvalue())
    return path


def sessions_opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[ort.SessionOptions, list]]:
    """(session options, provider names) of every ONNX Runtime session opened from now on."""
    real, opened = ort.InferenceSession, []

    def session(path, sess_options=None, providers=None):  # noqa: ANN001, ANN202
        opened.append((sess_options, [name for name, _ in providers]))
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", session)
    return opened


def infer(model: Path, images: list[Path], output: Path, *args: str) -> int:
    paths = [str(p) for p in images]
    return main(["--model", str(model), *paths, "--output", str(output), "--no-progress", *args])


def test_threads_sets_onnx_runtime_intra_op_threads(model_file: Path, tmp_path: Path, monkeypatch):
    opened = sessions_opened(monkeypatch)
    image = photo_like(tmp_path / "a.jpg", 0, (64, 48))
    assert infer(model_file, [image], tmp_path / "p.csv", "--threads", "3") == 0
    assert [options.intra_op_num_threads for options, _ in opened] == [3]
    opened.clear()
    assert infer(model_file, [image], tmp_path / "q.csv") == 0
    assert [options.intra_op_num_threads for options, _ in opened] == [0]  # ORT's default


def test_providers_cpu_asks_for_cpu_alone_where_auto_would_pick_cuda(
    model_file: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])  # a GPU box
    opened = sessions_opened(monkeypatch)
    image = photo_like(tmp_path / "a.jpg", 0, (64, 48))
    assert infer(model_file, [image], tmp_path / "p.csv", "--providers", "cpu") == 0
    assert [providers for _, providers in opened] == [[CPU]]
    assert f"1 of 1 images classified, 0 errors, on {CPU}" in capsys.readouterr().out


def test_fast_decode_is_the_default_and_no_fast_decode_decodes_whole(
    model_file: Path, tmp_path: Path
) -> None:
    """By default moths-infer gives exactly what OnnxClassifier (fast_decode=True, the
    validation transform's decode) gives; --no-fast-decode the full decode's numbers,
    close to them (the input bound is held in test_inference_decode.py)."""
    images = [photo_like(tmp_path / f"{i}.jpg", i) for i in range(3)]
    full, fast, asked = tmp_path / "full.jsonl", tmp_path / "fast.jsonl", tmp_path / "a.jsonl"
    assert infer(model_file, images, full, "--top-k", "99", "--no-fast-decode") == 0
    assert infer(model_file, images, fast, "--top-k", "99") == 0  # every class
    assert infer(model_file, images, asked, "--top-k", "99", "--fast-decode") == 0
    classifier = OnnxClassifier.from_file(model_file, "cpu")
    library = [probabilities(p.top_k) for p in classifier.predict(images, top_k=99)]
    exact = OnnxClassifier.from_file(model_file, "cpu", fast_decode=False)
    whole = [probabilities(p.top_k) for p in exact.predict(images, top_k=99)]
    full, fast = probabilities_of(full), probabilities_of(fast)
    np.testing.assert_allclose(fast, library, atol=1e-6, rtol=0)  # 6 decimals written
    np.testing.assert_allclose(probabilities_of(asked), library, atol=1e-6, rtol=0)
    np.testing.assert_allclose(full, whole, atol=1e-6, rtol=0)
    differences = np.abs(np.array(fast) - np.array(full))
    assert differences.max() > 1e-5  # a reduced-scale decode, not the full one
    assert differences.max() < 0.02
    recorded = {
        name: json.loads((tmp_path / f"{name}.jsonl.run.json").read_text())["settings"]
        for name in ("fast", "full")
    }
    assert recorded["fast"]["fast_decode"] and not recorded["full"]["fast_decode"]


def probabilities(top_k: dict) -> list[float]:
    """Every (rank, class) probability of one image, in a fixed order."""
    return [prob for rank in sorted(top_k) for _, prob in sorted(top_k[rank])]


def probabilities_of(jsonl: Path) -> list[list[float]]:
    rows = [json.loads(line)["top_k"] for line in jsonl.read_text().splitlines()]
    return [
        probabilities({r: [(s["name"], s["prob"]) for s in k] for r, k in t.items()}) for t in rows
    ]


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_threads_below_one_is_one_line_and_exit_2(
    model_file: Path, tmp_path: Path, capsys, threads: str
) -> None:
    image = photo_like(tmp_path / "a.jpg", 0, (64, 48))
    assert infer(model_file, [image], tmp_path / "p.csv", "--threads", threads) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"moths-infer: error: --threads must be at least 1, got {threads}"
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("workers", [1, 3])
def test_decode_workers_is_the_number_of_decoding_threads(
    model_file: Path, tmp_path: Path, monkeypatch, workers: int
) -> None:
    seen = calling_threads(monkeypatch, OnnxClassifier, "model_input")
    images = [photo_like(tmp_path / f"{i}.jpg", i, (64, 48)) for i in range(12)]
    args = ("--decode-workers", str(workers), "--batch-size", "4")
    assert infer(model_file, images, tmp_path / "p.csv", *args) == 0
    assert len(seen) == workers


def test_decode_workers_default_leaves_the_cpu_provider_cores_for_the_model(model_file):
    assert [default_decode_workers(CPU, cores) for cores in (1, 2, 4, 64)] == [1, 2, 4, 4]
    assert [default_decode_workers(CUDA, cores) for cores in (1, 2, 4, 64)] == [1, 2, 4, 16]
    classifier = OnnxClassifier.from_file(model_file, providers="cpu")
    assert classifier.decode_workers == default_decode_workers(CPU)


def test_decode_workers_below_one_is_one_line_and_exit_2(model_file: Path, tmp_path: Path, capsys):
    image = photo_like(tmp_path / "a.jpg", 0, (64, 48))
    assert infer(model_file, [image], tmp_path / "p.csv", "--decode-workers", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err == "moths-infer: error: --decode-workers must be at least 1, got 0"
