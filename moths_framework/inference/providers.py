"""Choosing ONNX Runtime execution providers and opening a session on them.

Works with either distribution: ``onnxruntime`` (CPU) and ``onnxruntime-gpu``
both import as ``onnxruntime``; what differs is
``onnxruntime.get_available_providers()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import onnxruntime as ort
except ImportError as error:  # the base install has no ONNX Runtime
    raise ImportError(
        "moths_framework.inference needs ONNX Runtime: pip install 'moths-framework[infer]' "
        "(CPU) or 'moths-framework[infer-gpu]' (NVIDIA GPU)"
    ) from error

__all__ = ["AUTO_ORDER", "CPU", "CUDA", "TENSORRT", "open_session", "resolve_providers"]

logger = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
AUTO_ORDER = (TENSORRT, CUDA, CPU)
_SUFFIX = "executionprovider"


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


def open_session(
    model_path: str | Path, providers: Sequence[str], num_threads: int | None = None
) -> ort.InferenceSession:
    """Open an inference session; a provider that fails to start gives way to the next.

    With ``[TensorRT, CUDA, CPU]``, a TensorRT failure (say its libraries are
    missing) retries with ``[CUDA, CPU]``, then ``[CPU]``, each time with a warning.

    Args:
        model_path: the ONNX file.
        providers: resolved names (see :func:`resolve_providers`), CPU last.
        num_threads: intra-op threads on CPU; ``None`` keeps ONNX Runtime's
            default (one per physical core).

    Raises:
        ValueError: the file cannot be loaded even on the last provider (not an
            ONNX model, corrupt).
    """
    path = Path(model_path)
    options = _session_options(num_threads)
    remaining = list(providers)
    while True:
        try:
            session = _create(path, options, [(n, _provider_options(n, path)) for n in remaining])
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


def _provider_options(name: str, model_path: Path) -> dict[str, Any]:
    if name == TENSORRT:
        # Building an engine takes minutes; the cache next to the model makes it a one-off.
        # fp16 stays off: it changes the numbers and needs its own parity check.
        cache = os.fspath(model_path.parent / f"{model_path.stem}.trt_cache")
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
            "trt_fp16_enable": False,
        }
    if name == CUDA:
        # ONNX Runtime's own default, stated so it is visible: the search runs once per
        # input shape, which a fixed batch size makes a one-off cost.
        return {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    return {}
