"""``moths-serve``: exported models over HTTP (AMI processing-service API + ``/v1``). No torch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

_PROG = "moths-serve"
_MB = 2**20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Serve models exported by moths-export: the AMI processing-service API "
        "(/info, /process, /livez, /readyz) and /v1 (/v1/classify, /v1/models); docs at /docs.",
    )
    add = parser.add_argument
    add("--model", action="append", default=[], metavar="PATH|zoo:ID",
        help="a classifier .onnx file or zoo:ID, served as a whole-image pipeline; "
        "repeat for several pipelines")  # fmt: skip
    add("--pipeline", action="append", default=[], metavar="FILE.yaml",
        help="a pipeline file (detector, filter, classifier: docs/commands/pipelines.md); "
        "repeatable, and with --model")  # fmt: skip
    add("--host", default="0.0.0.0", help="address to listen on (127.0.0.1: this machine only)")
    add("--port", type=int, default=2000)
    add("--providers", default="auto", help="'auto' (TensorRT, CUDA, CPU) or e.g. cuda,cpu")
    add("--threads", type=int, help="ONNX Runtime CPU threads per model")
    add("--max-batch", type=int, default=32, help="images per model call at most")
    add("--max-wait-ms", type=float, default=10.0, help="wait for a batch to fill, at most")
    add("--max-in-flight", type=int, default=512,
        help="images admitted at once over all requests; beyond: 503 + Retry-After")  # fmt: skip
    add("--request-timeout", type=float, default=120.0, help="seconds per request (then 504)")
    add("--fetch-timeout", type=float, default=10.0,
        help="seconds to fetch one image URL, counted from when it has a connection")  # fmt: skip
    add("--fetch-connections", type=int, default=64, help="image downloads at once, in all")
    add("--fetch-per-request", type=int, default=16,
        help="image downloads at once for one request (its fair share)")  # fmt: skip
    add("--fetch-budget-mb", type=float, default=256.0,
        help="fetched image bytes not yet decoded, in all; downloads wait for room")  # fmt: skip
    add("--max-image-mb", type=float, default=30.0, help="largest image file")
    add("--max-pixels", type=int, default=40_000_000,
        help="largest image (width x height) decoded; a larger JPEG decodes smaller")  # fmt: skip
    add("--max-body-mb", type=float, default=64.0, help="largest request body (multipart)")
    add("--max-json-mb", type=float, default=4.0, help="largest request body that is not multipart")
    add("--body-budget-mb", type=float, default=256.0,
        help="request bodies held at once; beyond: 503 + Retry-After")  # fmt: skip
    add("--limit-concurrency", type=int, default=128,
        help="connections and requests at once (uvicorn); beyond: 503")  # fmt: skip
    add("--allow-hosts", metavar="HOST,...",
        help="fetch images only from these hosts (default: any http/https host)")  # fmt: skip
    add("--deny-private-networks", action="store_true",
        help="fetch only from public addresses (checked after DNS, every redirect)")  # fmt: skip
    add("--token-file", help="require 'Authorization: Bearer <token in this file>'")
    add("--decode-workers", type=int, help="image decoding threads (default min(8, cores))")
    add("--graceful-timeout", type=float, default=30.0,
        help="on shutdown, seconds to let requests in flight finish")  # fmt: skip
    add("--allow-insecure-http", action="store_true",
        help="read zoo: indexes and files over plain http:// (anyone on the network path can "
        "change them and their sha256); also MOTHS_ZOO_INSECURE=1")  # fmt: skip
    return parser


def _resolve(spec: str, allow_insecure_http: bool = False) -> Path:
    """The local file of ``--model``: a path, or ``zoo:ID`` through the model zoo."""
    if not spec.startswith("zoo:"):
        return Path(spec)
    try:
        from moths_framework.zoo import allowing_insecure_http, resolve
    except ImportError:
        raise ValueError(
            f"--model {spec}: this install has no model zoo (moths_framework.zoo); "
            "give the .onnx path instead"
        ) from None
    with allowing_insecure_http(allow_insecure_http):
        return Path(resolve(spec))


def _check_numbers(opts: argparse.Namespace) -> None:
    """ValueError naming every option whose value cannot work (before a server starts)."""
    counts = {
        "--max-batch": opts.max_batch,
        "--max-in-flight": opts.max_in_flight,
        "--fetch-connections": opts.fetch_connections,
        "--fetch-per-request": opts.fetch_per_request,
        "--max-pixels": opts.max_pixels,
        "--limit-concurrency": opts.limit_concurrency,
    }
    # Given or not: 0 would silently mean "the default" to ONNX Runtime and the engine.
    counts |= {"--threads": opts.threads, "--decode-workers": opts.decode_workers}
    bad = [name for name, value in counts.items() if value is not None and value < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)} must be >= 1")
    positive = {
        "--request-timeout": opts.request_timeout,
        "--fetch-timeout": opts.fetch_timeout,
        "--max-image-mb": opts.max_image_mb,
        "--max-body-mb": opts.max_body_mb,
        "--max-json-mb": opts.max_json_mb,
        "--fetch-budget-mb": opts.fetch_budget_mb,
        "--body-budget-mb": opts.body_budget_mb,
    }
    bad = [name for name, value in positive.items() if not value > 0]  # NaN too
    if bad:
        raise ValueError(f"{', '.join(bad)} must be > 0")
    if not (opts.max_wait_ms >= 0 and opts.graceful_timeout >= 0) or opts.port < 0:
        raise ValueError("--max-wait-ms, --port and --graceful-timeout must be >= 0")
    if opts.fetch_budget_mb < opts.max_image_mb or opts.body_budget_mb < opts.max_body_mb:
        raise ValueError(
            "--fetch-budget-mb must be >= --max-image-mb and --body-budget-mb >= --max-body-mb"
        )


def _options(opts: argparse.Namespace):  # noqa: ANN202 (ServeOptions, imported lazily)
    from moths_framework.serve import ServeOptions
    from moths_framework.serve.auth import read_token

    _check_numbers(opts)
    hosts = [h.strip() for h in (opts.allow_hosts or "").split(",") if h.strip()]
    return ServeOptions(
        max_batch=opts.max_batch,
        max_wait_ms=opts.max_wait_ms,
        max_in_flight=opts.max_in_flight,
        request_timeout=opts.request_timeout,
        fetch_timeout=opts.fetch_timeout,
        fetch_connections=opts.fetch_connections,
        fetch_per_request=opts.fetch_per_request,
        fetch_budget_bytes=int(opts.fetch_budget_mb * _MB),
        max_image_bytes=int(opts.max_image_mb * _MB),
        max_pixels=opts.max_pixels,
        max_body_bytes=int(opts.max_body_mb * _MB),
        max_json_bytes=int(opts.max_json_mb * _MB),
        body_budget_bytes=int(opts.body_budget_mb * _MB),
        allow_hosts=hosts or None,
        deny_private_networks=opts.deny_private_networks,
        decode_workers=opts.decode_workers,
        token=read_token(opts.token_file) if opts.token_file else None,
    )


def _stages(model) -> str:  # noqa: ANN001 (ServedModel, imported lazily)
    """What a pipeline is made of, for its start-up line."""
    if model.stages is None:
        return model.source
    parts = [f"{role} {stage.source}" for role, stage in (
        ("detector", model.detector), ("filter", model.filter)) if stage is not None]  # fmt: skip
    return f"{model.stages.spec.path}: {', '.join([*parts, f'classifier {model.source}'])}"


def main(args: list[str] | None = None) -> int:
    """Run ``moths-serve`` until interrupted.

    Returns:
        0 after a clean shutdown; 1 if a model fails its warm-up (the server
        stops, one line says why); 2 on a usage error (missing model, bad
        option, unreadable token file, the serve extra not installed).
    """
    opts = _parser().parse_args(args)
    logging.basicConfig(format=f"{_PROG}: %(message)s")
    logging.getLogger("moths_framework").setLevel(logging.INFO)
    fatal: list[str] = []
    try:
        import uvicorn

        from moths_framework.serve import create_app, load_served_model
        from moths_framework.serve.served import load_served_pipeline
        from moths_framework.zoo import allowing_insecure_http

        options = _options(opts)
        if not opts.model and not opts.pipeline:
            raise ValueError("give --model PATH|zoo:ID or --pipeline FILE.yaml (or several)")
        models = [
            load_served_model(_resolve(spec, opts.allow_insecure_http), source=spec,
                              providers=opts.providers,
                              num_threads=opts.threads)
            for spec in opts.model
        ]  # fmt: skip
        with allowing_insecure_http(opts.allow_insecure_http):
            models += [
                load_served_pipeline(path, opts.providers, opts.threads, opts.max_batch)
                for path in opts.pipeline
            ]
        server: uvicorn.Server | None = None

        def stop_for_good(message: str) -> None:
            fatal.append(message)
            if server is not None:
                server.should_exit = True

        app = create_app(models, options, on_fatal=stop_for_good)
    except ImportError as error:
        print(f"{_PROG}: error: {error}; pip install 'moths-framework[serve]'", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:  # ModelFormatError is a ValueError
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    for model in models:
        print(f"{_PROG}: pipeline {model.slug} <- {_stages(model)} ({model.classifier.provider})")
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        limit_concurrency=opts.limit_concurrency,
        timeout_graceful_shutdown=opts.graceful_timeout,
        log_level="info",
    )
    server = uvicorn.Server(config)
    server.run()
    if fatal:
        print(f"{_PROG}: error: {fatal[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
