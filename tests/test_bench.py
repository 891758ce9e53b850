"""The benchmark scripts in bench/: what they time and how they label the result.

The scripts are not timed here; their timed parts are replaced by recorders so
the order of the contenders and the wording of the result line are checked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.bench_scripts import load_bench


def test_prepare_alternates_first_side_and_labels_the_rerun_ratio(monkeypatch, tmp_path, capsys):
    prepare = load_bench("prepare")
    calls: list[str] = []
    times = {"baseline": 6.0, "first": 2.0, "rerun": 0.5}

    def baseline(files, workers):
        calls.append("baseline")
        return times["baseline"], {"broken.jpg"}

    def timed_prepare(out, sources, workers):
        kind = "rerun" if out in seen else "first"
        seen.add(out)
        calls.append(kind)
        return times[kind], SimpleNamespace(decoded=0)

    seen: set[Path] = set()
    monkeypatch.setattr(prepare, "make_corpus", lambda root, *a: {"broken.jpg"})
    monkeypatch.setattr(prepare, "run_baseline", baseline)
    monkeypatch.setattr(prepare, "timed_prepare", timed_prepare)
    monkeypatch.setattr(prepare, "broken_rejects", lambda out: {"broken.jpg"})
    monkeypatch.setattr(sys, "argv", ["prepare.py", "--dir", str(tmp_path), "--repeat", "3"])
    prepare.main()
    assert calls == ["baseline", "first", "rerun"] + ["first", "rerun", "baseline"] + [
        "baseline", "first", "rerun"
    ]  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "prepare: first run 3.00x faster than baseline, "
        "re-run 4.00x faster than its first run, same rejects: yes"
    )


@pytest.mark.parametrize(("same", "word"), [(True, "yes"), (False, "no")])
def test_prepare_result_line(same: bool, word: str) -> None:
    line = load_bench("prepare").result_line(2.5, 100.0, same)
    assert line == (
        "prepare: first run 2.50x faster than baseline, "
        f"re-run 100.00x faster than its first run, same rejects: {word}"
    )


def test_infer_result_line_names_each_sides_best_setting() -> None:
    line = load_bench("infer").result_line(120.04, 16, 40.0, 32, 2)
    assert line == (
        "infer: ort 120.0 img/s (batch 16), torch best 40.0 img/s (batch 32, workers 2), 3.00x"
    )


def test_infer_torch_baseline_reads_files_through_a_dataloader_with_workers(tmp_path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from moths_framework.preprocessing import Preprocessing

    infer = load_bench("infer")
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(np.full((30, 40, 3), 40 * i, np.uint8)).save(paths[-1])

    class Brightness(torch.nn.Module):
        """Two 'ranks'; the species logits make the brightest image class 1."""

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            mean = x.mean(dim=(1, 2, 3))
            return [torch.stack([-mean, mean], 1), torch.stack([mean, -mean], 1)]

    model = Brightness()
    model.preprocessing = Preprocessing((16, 16))
    setting = infer.torch_setting(model, paths, batch_size=2, workers=1, channels_last=True)
    assert setting.loader.num_workers == 1 and setting.loader.persistent_workers
    assert setting.label == "batch 2, workers 1"
    top1 = infer.torch_predict(model, setting)
    assert top1 == [0, 0, 0, 1, 1]  # in file order, every image, across batches


def test_infer_sweep_keeps_each_settings_best_pass_and_alternates(monkeypatch) -> None:
    infer = load_bench("infer")
    clock = iter([0.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 8.0])  # a: 2 s, b: 1 s, b: 1 s, a: 4 s
    monkeypatch.setattr(infer.time, "perf_counter", lambda: next(clock))
    calls: list[str] = []
    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    assert infer.sweep(runs, rounds=2, images=8) == {"a": 4.0, "b": 8.0}
    assert calls == ["a", "b", "b", "a"]


def test_natural_photos_come_installed_and_make_over_200_views(monkeypatch, tmp_path):
    """bench/int8.py's ImageNet agreement: scikit-learn's and scikit-image's sample photos,
    read from their wheels (a fetch fails here), twelve views each, mirrored in pairs."""
    skimage_fetchers = pytest.importorskip("skimage.data._fetchers", reason="the bench extra")

    class NoDownloads:
        abspath = tmp_path  # an empty cache: only the files inside the wheel are found

        def fetch(self, name: str) -> str:
            raise AssertionError(f"scikit-image tried to download {name}")

    monkeypatch.setattr(skimage_fetchers, "_image_fetcher", NoDownloads())
    natural = load_bench("natural_photos")
    photos = natural.natural_photos()
    views = natural.views(photos)
    assert len(photos) == 18 and len(views) == 12 * len(photos) >= 200
    assert len({name for name, _ in views}) == len(views)
    named = dict(views)
    whole, mirrored = named["chelsea/whole"], named["chelsea/whole/flip"]
    assert whole.size == photos["chelsea"].size == (451, 300)
    assert mirrored.getpixel((0, 0)) == whole.getpixel((450, 0))
    assert named["chelsea/crop2"].size == (338, 225)  # 3/4 of each side, top left
    assert named["chelsea/crop2"].getpixel((0, 0)) == whole.getpixel((0, 0))


def test_data_bench_runs_both_loaders_and_ends_with_its_result_line(capsys) -> None:
    data = load_bench("data")
    assert data.result_line(35.84, 15.8) == "data: 35.8 img/s vs torchvision 15.8 img/s, 2.27x"
    data.main(["--images", "12", "--size", "96x72", "--rounds", "2", "--workers", "0"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"\d+ training images 96x72 -> 224 px, batch 32, 0 workers", lines[0])
    assert re.fullmatch(r"data: \d+\.\d img/s vs torchvision \d+\.\d img/s, \d+\.\d\dx", lines[-1])
    ratio_lines = [line for line in lines if line.startswith("  ours / torchvision per round:")]
    assert len(ratio_lines) == 1
    assert re.fullmatch(r"  ours / torchvision per round: \d+\.\d\d, \d+\.\d\d", ratio_lines[0])


def test_int8_halves_keep_one_half_of_int8_each(tmp_path) -> None:
    """bench/int8_imagenet.py's split of the int8 error: with float activations the int8
    model computes the float graph on its int8 weights, which a plain numpy rounding of
    each weight (per output channel, 127 steps of its largest magnitude) reproduces; with
    float weights, what is left is the activations' rounding, within a few of its steps."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from onnx import numpy_helper
    from onnxruntime.quantization import quant_pre_process

    from moths_framework.export.int8 import quantize_int8

    bench = load_bench("int8_imagenet")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    ).eval()  # fmt: skip
    bench.export_fp32(net, (16, 16), tmp_path / "fp32.onnx")
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration)
    quant_pre_process(str(tmp_path / "fp32.onnx"), str(tmp_path / "prepared.onnx"))
    int8, prepared = (onnx.load(str(tmp_path / f"{k}.onnx")) for k in ("int8", "prepared"))
    batch = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)

    def run(proto) -> np.ndarray:  # noqa: ANN001
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {"image": batch})[0]

    rounded = onnx.ModelProto()
    rounded.CopyFrom(prepared)
    weights = {n.input[1] for n in rounded.graph.node if n.op_type in ("Conv", "Gemm")}
    for init in rounded.graph.initializer:
        if init.name in weights:
            w = numpy_helper.to_array(init)
            step = np.abs(w).reshape(len(w), -1).max(1).reshape(-1, *[1] * (w.ndim - 1)) / 127
            init.CopyFrom(
                numpy_helper.from_array((np.round(w / step) * step).astype(w.dtype), init.name)
            )
    fp32, both = run(prepared), run(int8)
    weights_alone = run(bench.float_activations(int8))
    activations_alone = run(bench.float_weights(int8, prepared))
    np.testing.assert_allclose(weights_alone, run(rounded), atol=1e-5)
    assert np.abs(weights_alone - fp32).max() > 1e-4  # the weights' rounding is there
    assert np.abs(activations_alone - both).max() > 1e-5  # and it is gone
    assert np.abs(activations_alone - fp32).max() < 0.1
