"""One script that measures a GPU box: environment, 16-mixed training, export parity, speed.

Run it from the repository root on a machine with an NVIDIA GPU:

    python bench/gpu.py [--wheels DIR] [--out DIR]

1. ``onnxruntime-gpu`` replaces ``onnxruntime`` (they share an import name):
   from ``--wheels DIR`` when given (offline boxes), else from the package
   index. Prints the versions, the GPU and ONNX Runtime's providers.
2. Trains ``configs/dev.yaml`` for one epoch with ``--trainer.precision
   16-mixed --trainer.accelerator gpu`` on ``test_data``.
3. Exports that checkpoint in fp32 and fp16 and runs both on the GPU and on
   CPU ONNX Runtime: top-1 must be identical, max |Δlogit| is printed; then
   ``OnnxClassifier(providers="auto")`` (moths-infer's path, with its
   fallback) against the CPU's rolled-up answers.
4. Times timm ``efficientnet_b0`` at 224 px, batch 64: ORT TensorRT EP (fp16,
   engine cache, shape profiles for batch 1..128), ORT CUDA EP (I/O binding;
   fp32 weights, and fp16 weights as ``moths-export --fp16`` writes them),
   PyTorch eager (fp16 autocast, channels_last) and ``torch.compile``. Prints
   one line per figure and ``gpu: trt X img/s, cuda Y, torch best Z (mode), N.NNx``.
5. Trap frames end to end (``bench/detect.py``'s 2048x1536 frames, its detector and
   ``efficientnet_b0`` classifier, 20 boxes a frame): ``Pipeline`` on the GPU
   (providers ``auto``, as ``moths-infer``; frames read ahead as its default on that
   provider) and on the CPU, against PyTorch eager on the GPU (fp16 autocast), rounds
   alternating (PyTorch's faster loop of ``bench/detect.py``'s two kept); prints
   ``gpu detect: ort X frames/s (provider), ort cpu Y, torch LOOP Z (cuda), N.NNx`` and
   how often the GPU pipeline's species agree with PyTorch's on the same detector input.

Without a CUDA device it prints the environment, ``gpu: skipped (no CUDA
device)`` for the rest and exits 0 (a test runs it that way).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH = 64
SIZE = 224


def say(line: str) -> None:
    print(line, flush=True)


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    """A command whose output is shown; a failure stops the script with its output."""
    done = subprocess.run(args, capture_output=True, text=True, **kw)
    if done.returncode:
        say(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"gpu: failed: {' '.join(args[:4])} ... (exit {done.returncode})")
    return done


def cli(command: str, *args: str) -> subprocess.CompletedProcess:
    """One of the project's console commands, run with this interpreter."""
    code = f"import sys; from moths_framework.cli.{command} import main; sys.exit(main())"
    return run(sys.executable, "-c", code, *args, cwd=REPO)


def install_onnxruntime_gpu(wheels: Path | None) -> None:
    """Swap onnxruntime for onnxruntime-gpu; checked in a child, as nothing is imported yet."""
    probe = "import onnxruntime as o; print('CUDAExecutionProvider' in o.get_available_providers())"
    has_cuda = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if has_cuda.stdout.strip() == "True":
        return
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "onnxruntime"])
    done = subprocess.run([*pip, *source, "onnxruntime-gpu"], capture_output=True, text=True)
    if done.returncode:
        say(f"gpu: could not install onnxruntime-gpu: {done.stderr.strip()[-300:]}")


def environment() -> bool:
    """Print versions, GPU and providers; True when a CUDA device is there."""
    import onnxruntime
    import torch

    if hasattr(onnxruntime, "preload_dlls"):
        onnxruntime.preload_dlls()
    say(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__} ({onnxruntime.get_device()})")  # fmt: skip
    say(f"providers: {', '.join(onnxruntime.get_available_providers())}")
    if not torch.cuda.is_available():
        return False
    props = torch.cuda.get_device_properties(0)
    say(f"gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    return True


def train_and_check_exports(work: Path) -> None:
    """Steps 2 and 3: 16-mixed training, fp32/fp16 export, GPU vs CPU ORT parity."""
    import numpy as np
    import onnxruntime as ort

    cli("prepare", str(work / "data"), "test_data/source_a", "test_data/source_b", "--no-progress")
    run_dir = work / "run"
    start = time.perf_counter()
    cli("fit", "--config", "configs/dev.yaml", "--trainer.max_epochs", "1",
        "--trainer.precision", "16-mixed", "--trainer.accelerator", "gpu",
        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
        "--data.source.init_args.path", str(work / "data" / "manifest.csv"))  # fmt: skip
    say(f"train: 1 epoch of configs/dev.yaml at 16-mixed on the GPU in "
        f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    from moths_framework.inference import OnnxClassifier

    images = sorted((work / "data" / "image_folder").rglob("*.*"))[:64]
    for precision in ("fp32", "fp16"):
        model = work / f"model-{precision}.onnx"
        cli("export", "--onnx", "--ckpt", str(run_dir / "best.ckpt"), "--output", str(model),
            *(["--fp16"] if precision == "fp16" else []))  # fmt: skip
        cpu = OnnxClassifier.from_file(model, providers="cpu")
        batch = np.stack([cpu.preprocess(cpu_image(p)) for p in images])
        gpu_session = ort.InferenceSession(str(model), providers=["CUDAExecutionProvider"])
        if gpu_session.get_providers()[0] != "CUDAExecutionProvider":
            say(f"export {precision}: skipped (CUDA EP did not start)")
            continue
        on_cpu = cpu.logits(batch)
        names = [o.name for o in gpu_session.get_outputs() if o.name in on_cpu]
        on_gpu = dict(zip(names, gpu_session.run(names, {"image": batch}), strict=True))
        delta = max(float(np.abs(on_cpu[r] - on_gpu[r]).max()) for r in names)
        same = all((on_cpu[r].argmax(1) == on_gpu[r].argmax(1)).all() for r in names)
        say(f"export {precision}: GPU vs CPU ORT on {len(images)} images: "
            f"max |Δlogit| {delta:.2e}, top-1 identical: {'yes' if same else 'NO'}")  # fmt: skip
    infer_on_gpu(work / "model-fp32.onnx", images)


def infer_on_gpu(model: Path, images: list[Path]) -> None:
    """moths-infer's own path on the GPU (providers auto, TensorRT > CUDA > CPU) vs the CPU."""
    from moths_framework.inference import OnnxClassifier

    gpu = OnnxClassifier.from_file(model, providers="auto")
    cpu = OnnxClassifier.from_file(model, providers="cpu")
    on_gpu, on_cpu = gpu.predict(images), cpu.predict(images)
    same = sum(a.prediction == b.prediction for a, b in zip(on_gpu, on_cpu, strict=True))
    say(f"infer: OnnxClassifier(providers='auto') runs on {gpu.provider}; "
        f"{same}/{len(images)} rolled-up answers equal the CPU's")  # fmt: skip


def cpu_image(path: Path):
    from moths_framework.images import open_rgb

    return open_rgb(path)


def throughput(step: Callable[[], None], sync: Callable[[], None], seconds: float = 3.0) -> float:
    """Batches per second of ``step`` after a warm-up, median of 5 timed windows."""
    for _ in range(3):
        step()
    sync()
    rates = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            step()
            n += 1
        sync()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def speed(work: Path) -> None:
    """Step 4: efficientnet_b0, 224 px, batch 64, four ways."""
    import numpy as np
    import onnxruntime as ort
    import timm
    import torch

    model = timm.create_model("efficientnet_b0", pretrained=False, exportable=True).eval()
    path = work / "efficientnet_b0.onnx"
    example = torch.randn(2, 3, SIZE, SIZE)
    torch.onnx.export(model, (example,), str(path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    x = np.random.default_rng(0).standard_normal((BATCH, 3, SIZE, SIZE), dtype=np.float32)
    sync = torch.cuda.synchronize
    figures: dict[str, float] = {}

    def ort_rate(model: Path, provider: str, options: dict) -> float | None:
        try:
            session = ort.InferenceSession(str(model), providers=[(provider, options)])
        except Exception as error:  # a provider whose libraries are missing
            say(f"  {provider}: did not start ({str(error).splitlines()[0][:160]})")
            return None
        if session.get_providers()[0] != provider:
            fallback = session.get_providers()[0]
            say(f"  {provider}: not running (ONNX Runtime fell back to {fallback})")
            return None
        binding = session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding.bind_ortvalue_input("image", value)
        binding.bind_output("logits", "cuda")
        return throughput(lambda: session.run_with_iobinding(binding), sync) * BATCH

    shapes = "image:1x3x224x224", f"image:{BATCH}x3x224x224", "image:128x3x224x224"
    trt = ort_rate(path, "TensorrtExecutionProvider", {
        "trt_fp16_enable": True, "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(work / "trt_cache"),
        "trt_profile_min_shapes": shapes[0], "trt_profile_opt_shapes": shapes[1],
        "trt_profile_max_shapes": shapes[2]})  # fmt: skip
    workspace = {"cudnn_conv_use_max_workspace": "1"}
    cuda = ort_rate(path, "CUDAExecutionProvider", workspace)
    cuda_fp16 = ort_rate(half_precision(path), "CUDAExecutionProvider", workspace)
    for name, rate in (
        ("ort tensorrt fp16", trt), ("ort cuda fp32", cuda), ("ort cuda fp16", cuda_fp16)
    ):  # fmt: skip
        say(f"speed: {name}: " + (f"{rate:.0f} img/s" if rate else "not measured"))
        if rate:
            figures[name] = rate

    net = model.cuda().to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).cuda().to(memory_format=torch.channels_last)

    def eager() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            net(xt)

    torch_rates = {"eager fp16 channels_last": throughput(eager, sync) * BATCH}
    compiled = torch.compile(net)

    def compiled_step() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            compiled(xt)

    try:
        torch_rates["torch.compile fp16"] = throughput(compiled_step, sync) * BATCH
    except Exception as error:  # inductor needs a compiler toolchain
        say(f"  torch.compile: failed ({str(error).splitlines()[0][:160]})")
    for name, rate in torch_rates.items():
        say(f"speed: torch {name}: {rate:.0f} img/s")
    mode, best = max(torch_rates.items(), key=lambda kv: kv[1])
    cuda_best = max([r for r in (cuda, cuda_fp16) if r] or [0.0])
    ort_best = max(trt or 0.0, cuda_best)
    fmt = lambda r: f"{r:.0f} img/s" if r else "n/a"  # noqa: E731
    say(f"gpu: trt {fmt(trt)}, cuda {fmt(cuda_best)}, torch best {best:.0f} img/s ({mode}), "
        f"{ort_best / best:.2f}x")  # fmt: skip


def frames_speed(
    work: Path,
    device: str = "cuda",
    frames: int = 16,
    size: tuple[int, int] = (2048, 1536),
    detections: int = 20,
    rounds: int = 3,
) -> str:
    """Step 5: trap frames end to end, ``Pipeline`` on the GPU and on the CPU against
    PyTorch eager on ``device``; returns the result line (``device="cpu"`` runs it all on
    the CPU, as a test does)."""
    sys.path.insert(0, str(REPO / "bench"))
    import detect  # bench/detect.py: the frames, the detector, the PyTorch loop
    import infer  # bench/infer.py: the classifier and the timing helpers

    from moths_framework.inference import OnnxClassifier, OnnxDetector, Pipeline
    from moths_framework.inference.pipeline import default_frame_workers

    paths = detect.write_frames(work / "jpegs", frames, size)
    detector, det_model, det_path = detect.build_detector(detect.DETECTOR, detections, work, paths)
    crops = sorted(str(p) for p in detect.CROPS.rglob("*.jpg"))[:32]
    classifier = infer.build_model(work, crops)
    cls_path = infer.export(classifier, work, crops)

    def pipeline(providers: str) -> Pipeline:
        found = OnnxDetector.from_file(det_path, providers)
        return Pipeline(found, OnnxClassifier.from_file(cls_path, providers), top_k=1,
                        frame_workers=default_frame_workers(found.provider))  # fmt: skip

    gpu, cpu = pipeline("auto" if device == "cuda" else "cpu"), pipeline("cpu")
    loop = detect.TorchLoop(detector, det_model, classifier, paths, device)
    runs = {
        "ort gpu": lambda: detect.ort_species(gpu, paths),
        "ort cpu": lambda: detect.ort_species(cpu, paths),
        **{f"torch {name}": run for name, run in loop.loops.items()},
    }
    for run in runs.values():  # warm-up: TensorRT builds its engines, cuDNN picks kernels
        run()
    per_round = infer.alternate(runs, rounds, frames)
    rates = {name: statistics.median(r) for name, r in per_round.items()}
    torch_name = max((name for name in rates if name.startswith("torch")), key=rates.get)
    classes = classifier.hierarchy.classes("species")
    agreement = detect.agreement(runs["ort gpu"](), loop.loops["prefetch"](), classes)
    say(f"  {len(paths)} frames {size[0]}x{size[1]}, {detections} boxes a frame: {agreement} "
        "(torch prefetch: the same detector input)")  # fmt: skip
    for name, rate in rates.items():
        say(f"  {name}: {rate:.2f} frames/s")
    return (
        f"gpu detect: ort {rates['ort gpu']:.2f} frames/s ({gpu.detector.provider}), "
        f"ort cpu {rates['ort cpu']:.2f}, {torch_name} {rates[torch_name]:.2f} ({device}), "
        f"{rates['ort gpu'] / rates[torch_name]:.2f}x"
    )


def half_precision(path: Path) -> Path:
    """The model with float16 weights and float32 input/output (as ``moths-export --fp16``)."""
    import onnx
    from onnxconverter_common import float16

    half = path.with_name(path.stem + "-fp16.onnx")
    onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True), half)
    return half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, help="folder with an onnxruntime-gpu wheel")
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    if torch.cuda.is_available():
        install_onnxruntime_gpu(args.wheels)
    if not environment():
        say("gpu: skipped (no CUDA device)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train_and_check_exports(work)
        speed(work)
        say(frames_speed(work / "frames"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
