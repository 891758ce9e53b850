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
    add("--model", action="append", required=True, metavar="PATH|zoo:ID",
        help="a .onnx file or zoo:ID; repeat for several pipelines")  # fmt: skip
    add("--host", default="0.0.0.0", help="address to listen on (127.0.0.1: this machine only)")
    add("--port", type=int, default=2000)
    add("--providers", default="auto", help="'auto' (TensorRT, CUDA, CPU) or e.g. cuda,cpu")
    add("--threads", type=int, help="ONNX Runtime CPU threads per model")
    add("--max-batch", type=int, default=32, help="images per model call at most")
    add("--max-wait-ms", type=float, default=10.0, help="wait for a batch to fill, at most")
    add("--max-in-flight", type=int, default=512,
        help="images admitted at once over all requests; beyond: 503 + Retry-After")  # fmt: skip
    add("--request-timeout", type=float, default=120.0, help="seconds per request (then 504)")
    add("--fetch-timeout", type=float, default=10.0, help="seconds to fetch one image URL")
    add("--max-image-mb", type=float, default=30.0, help="largest image file")
    add("--max-body-mb", type=float, default=64.0, help="largest request body")
    add("--allow-hosts", metavar="HOST,...",
        help="fetch images only from these hosts (default: any http/https host)")  # fmt: skip
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


def _options(opts: argparse.Namespace):  # noqa: ANN202 (ServeOptions, imported lazily)
    from moths_framework.serve import ServeOptions
    from moths_framework.serve.auth import read_token

    numbers = [opts.max_batch, opts.max_in_flight, opts.port + 1]
    if min(numbers) < 1 or opts.max_wait_ms < 0:
        raise ValueError("--max-batch and --max-in-flight must be >= 1, --max-wait-ms >= 0")
    hosts = [h.strip() for h in (opts.allow_hosts or "").split(",") if h.strip()]
    return ServeOptions(
        max_batch=opts.max_batch,
        max_wait_ms=opts.max_wait_ms,
        max_in_flight=opts.max_in_flight,
        request_timeout=opts.request_timeout,
        fetch_timeout=opts.fetch_timeout,
        max_image_bytes=int(opts.max_image_mb * _MB),
        max_body_bytes=int(opts.max_body_mb * _MB),
        allow_hosts=hosts or None,
        decode_workers=opts.decode_workers,
        token=read_token(opts.token_file) if opts.token_file else None,
    )


def main(args: list[str] | None = None) -> int:
    """Run ``moths-serve`` until interrupted.

    Returns:
        0 after a clean shutdown, 2 on a usage error (missing model, bad option,
        unreadable token file, the serve extra not installed).
    """
    opts = _parser().parse_args(args)
    logging.basicConfig(format=f"{_PROG}: %(message)s")
    logging.getLogger("moths_framework").setLevel(logging.INFO)
    try:
        import uvicorn

        from moths_framework.serve import create_app, load_served_model

        options = _options(opts)
        models = [
            load_served_model(_resolve(spec, opts.allow_insecure_http), source=spec,
                              providers=opts.providers,
                              num_threads=opts.threads)
            for spec in opts.model
        ]  # fmt: skip
        app = create_app(models, options)
    except ImportError as error:
        print(f"{_PROG}: error: {error}; pip install 'moths-framework[serve]'", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:  # ModelFormatError is a ValueError
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    for model in models:
        print(f"{_PROG}: pipeline {model.slug} <- {model.source} ({model.classifier.provider})")
    uvicorn.run(
        app,
        host=opts.host,
        port=opts.port,
        timeout_graceful_shutdown=opts.graceful_timeout,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
