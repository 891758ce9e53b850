"""Choosing ONNX Runtime execution providers and opening a session on them.

Works with either distribution: ``onnxruntime`` (CPU) and ``onnxruntime-gpu``
both import as ``onnxruntime``; what differs is
``onnxruntime.get_available_providers()``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import onnxruntime as ort
except ImportError as error:  # the base install has no ONNX Runtime
    raise ImportError(
        "moths_framework.inference needs ONNX Runtime: pip install 'moths-framework[infer]' "
        "(CPU) or 'moths-framework[infer-gpu]' (NVIDIA GPU)"
    ) from error

__all__ = [
    "AUTO_ORDER",
    "CPU",
    "CUDA",
    "TENSORRT",
    "EngineSettings",
    "open_session",
    "resolve_providers",
    "tensorrt_options",
    "workers_beside",
]

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
AUTO_ORDER = (TENSORRT, CUDA, CPU)
_SUFFIX = "executionprovider"


def workers_beside(provider: str, on_cpu: int, on_gpu: int, cores: int | None = None) -> int:
    """Threads to run beside a model on ``provider``: ``on_cpu`` on the CPU provider (the
    model needs the other cores), ``on_gpu`` on a GPU provider (faster than a few threads
    feed it); never more than ``cores`` (this machine's)."""
    return min(on_cpu if provider == CPU else on_gpu, cores or os.cpu_count() or 1)


def resolve_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Turn a providers request into ONNX Runtime provider names, in priority order.

    Args:
        providers: ``"auto"`` (TensorRT, then CUDA, then CPU, whichever this
            ONNX Runtime has), a list of names, or a comma-separated string.
            Names are the full ONNX Runtime names or short ones, case-insensitive
            (``cuda``, ``tensorrt``, ``cpu``).

    Returns:
        The names, CPU appended last if absent (it runs nodes the others cannot).

    Raises:
        ValueError: a name is unknown or not available here; the message lists
            the available providers.
    """
    available = list(ort.get_available_providers())
    if isinstance(providers, str):
        providers = [name.strip() for name in providers.split(",") if name.strip()]
    if [name.lower() for name in providers] in ([], ["auto"]):
        return [name for name in AUTO_ORDER if name in available] or [CPU]
    by_key = {_key(name): name for name in available}
    unknown = [name for name in providers if _key(name) not in by_key]
    if unknown:
        gpu = any(_key(name) != "cpu" for name in unknown)
        hint = " (GPU providers need onnxruntime-gpu)" if gpu else ""
        raise ValueError(
            f"execution provider(s) {', '.join(unknown)} not available in this onnxruntime; "
            f"available: {', '.join(available)}{hint}"
        )
    names = list(dict.fromkeys(by_key[_key(name)] for name in providers))
    return names if CPU in names else [*names, CPU]


def _key(name: str) -> str:
    key = name.strip().lower()
    return key[: -len(_SUFFIX)] if key.endswith(_SUFFIX) else key


@dataclass(frozen=True)
class EngineSettings:
    """How a TensorRT engine is built for a model.

    Attributes:
        batch_size: the batch the engine is optimised for; its shape profile
            covers batches 1 to twice this.
        fp16: build an fp16 engine; ``None`` means "when the model's weights
            are fp16" (metadata ``moths.precision``).
        shapes: the input shapes of the profile, (smallest, optimal, largest), for a
            model whose input size varies (a detector's frames); ``None``: from
            the model's fixed image size and ``batch_size``.
    """

    batch_size: int = 32
    fp16: bool | None = None
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None


def open_session(
    model_path: str | Path,
    providers: Sequence[str],
    num_threads: int | None = None,
    engine: EngineSettings | None = None,
) -> ort.InferenceSession:
    """Open an inference session; a provider that fails to start gives way to the next.

    With ``[TensorRT, CUDA, CPU]``, a TensorRT failure (say its libraries are
    missing) retries with ``[CUDA, CPU]``, then ``[CPU]``, each time with a warning.

    Args:
        model_path: the ONNX file.
        providers: resolved names (see :func:`resolve_providers`), CPU last.
        num_threads: intra-op threads on CPU; ``None`` keeps ONNX Runtime's
            default (one per physical core).
        engine: TensorRT engine settings (used only when TensorRT is asked for).

    Raises:
        ValueError: the file cannot be loaded even on the last provider (not an
            ONNX model, corrupt).
    """
    path = Path(model_path)
    options = _session_options(num_threads)
    remaining = list(providers)
    trt = _tensorrt_for(path, engine or EngineSettings()) if TENSORRT in remaining else {}
    while True:
        try:
            chosen = [(n, trt if n == TENSORRT else _provider_options(n)) for n in remaining]
            session = _create(path, options, chosen)
            break
        except Exception as error:  # GPU start failures come as many types (missing libs, OOM)
            if len(remaining) == 1:
                raise ValueError(f"cannot load model {path}: {error}") from error
            fallback = ", ".join(remaining[1:])
            logger.warning("%s failed to start (%s); trying %s", remaining[0], error, fallback)
            remaining = remaining[1:]
    running = session.get_providers()[0]
    if running != remaining[0]:
        # ONNX Runtime itself may drop a provider it cannot start and only log it.
        logger.warning("%s is not running; %s runs the model", remaining[0], running)
    logger.info("ONNX Runtime runs %s on %s", path.name, running)
    return session


def _create(
    path: Path, options: ort.SessionOptions, providers: list[tuple[str, dict[str, Any]]]
) -> ort.InferenceSession:
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=providers)


def _session_options(num_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1  # sequential execution: one op at a time uses the pool
    # Spinning intra-op threads would burn the cores that decode the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _provider_options(name: str) -> dict[str, Any]:
    if name == CUDA:
        # ONNX Runtime's own default, stated so it is visible: the search runs once per
        # input shape, which a fixed batch size makes a one-off cost.
        return {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    return {}


def tensorrt_options(
    model_path: Path,
    input_name: str,
    chw: Sequence[int],
    batch_size: int,
    fp16: bool,
    gpu: str,
    shapes: tuple[Sequence[int], Sequence[int], Sequence[int]] | None = None,
) -> dict[str, Any]:
    """TensorRT provider options: explicit shape profiles and a cache no update can reuse.

    The profile covers batches 1 to ``2 × batch_size`` and is optimised for
    ``batch_size``, so no new batch size rebuilds the engine. Building an
    engine takes minutes; it is cached next to the model under a folder named
    by the model file's hash and the GPU, so a changed model or another card
    never picks up a stale engine.

    Args:
        model_path: the ONNX file (hashed).
        input_name: the model's image input.
        chw: channels, height and width of one image.
        batch_size: the batch the engine is optimised for.
        fp16: let TensorRT run layers in fp16.
        gpu: the GPU's name, part of the cache key.
        shapes: (smallest, optimal, largest) input shapes instead of those made of
            ``chw`` and ``batch_size`` (a detector's frames vary in size).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if shapes is None:
        shapes = tuple((n, *chw) for n in (1, batch_size, 2 * batch_size))
    smallest, optimal, largest = ("x".join(str(int(d)) for d in s) for s in shapes)
    key = f"{_file_hash(model_path)[:16]}-{re.sub(r'[^A-Za-z0-9]+', '-', gpu).strip('-').lower()}"
    cache = os.fspath(model_path.parent / f"{model_path.stem}.trt_cache" / key)
    return {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": fp16,
        "trt_profile_min_shapes": f"{input_name}:{smallest}",
        "trt_profile_opt_shapes": f"{input_name}:{optimal}",
        "trt_profile_max_shapes": f"{input_name}:{largest}",
    }


def _tensorrt_for(path: Path, engine: EngineSettings) -> dict[str, Any]:
    """TensorRT options for ``path``, read from the model with a cheap CPU session."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe = _create(path, options, [(CPU, {})])
    image = probe.get_inputs()[0]
    precision = probe.get_modelmeta().custom_metadata_map.get("moths.precision", "fp32")
    fp16 = engine.fp16 if engine.fp16 is not None else precision == "fp16"
    return tensorrt_options(
        path, image.name, image.shape[1:], engine.batch_size, fp16, _gpu(), engine.shapes
    )


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gpu() -> str:
    """The first visible GPU's name (the engine cache key), or ``gpu`` if unknown."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "gpu"
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "gpu"
    return out.strip().splitlines()[0] if out.strip() else "gpu"
