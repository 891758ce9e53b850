"""``moths-worker``: pull tasks from Antenna's job queue and answer them. No torch.

The pull side of the AMI platform (Antenna's ``async_api`` jobs): the worker
calls Antenna, so it runs behind firewalls and on clusters; ``moths-serve`` is
the push side (Antenna calls it). Both process a task with the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from importlib import metadata

_PROG = "moths-worker"
_MB = 2**20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        allow_abbrev=False,  # the --devices children rewrite the command line by exact names
        description="Pull work from Antenna (the AMI platform): register this worker's "
        "pipelines, claim the tasks of their jobs, process each image, post the results.",
    )
    add = parser.add_argument
    add("--antenna", required=True, metavar="URL",
        help="Antenna's API root, e.g. https://antenna.insectai.org/api/v2 (a bare host "
        "means /api/v2)")  # fmt: skip
    add("--token-file", required=True, metavar="FILE",
        help="file holding the processing service's Antenna API token")  # fmt: skip
    add("--pipeline", action="append", default=[], metavar="FILE.yaml",
        help="a pipeline file: detector, filter, classifier (moths-serve's); repeat")  # fmt: skip
    add("--model", action="append", default=[], metavar="PATH|zoo:ID",
        help="a classifier .onnx file or zoo:ID as a whole-image pipeline; repeatable")  # fmt: skip
    add("--batch-size", type=int, default=24, metavar="N",
        help="tasks claimed (and images processed) at once")  # fmt: skip
    add("--devices", metavar="DEV,...",
        help="one worker process per entry: cpu, cuda:0, cuda:1 ... (default: one process, "
        "the fastest device here)")  # fmt: skip
    add("--poll-interval", type=float, default=5.0, metavar="S",
        help="seconds between looks for jobs while there are none")  # fmt: skip
    add("--project", type=int, action="append", default=[], metavar="ID",
        help="register with this Antenna project; repeat (default: every project the token "
        "can see)")  # fmt: skip
    add("--name", help=f"the processing service's name in Antenna (default: '{_PROG} (HOSTNAME)')")
    add("--no-register", action="store_true", help="do not register the pipelines at start")
    add("--threads", type=int, metavar="N", help="ONNX Runtime CPU threads per model")
    add("--fetch-timeout", type=float, default=10.0, metavar="S", help="seconds to fetch one image")
    add("--max-image-mb", type=float, default=30.0, metavar="MB", help="largest image file fetched")
    add("--allow-hosts", metavar="HOST,...",
        help="fetch images only from these hosts (default: any http/https host)")  # fmt: skip
    add("--deny-private-networks", action="store_true",
        help="fetch images only from public addresses (checked after DNS, redirects)")  # fmt: skip
    add("--allow-insecure-http", action="store_true",
        help="read zoo: indexes and files over plain http:// (see moths-serve)")  # fmt: skip
    add("--child", help=argparse.SUPPRESS)  # set by --devices on each child process
    return parser


def _check_numbers(opts: argparse.Namespace) -> None:
    bad = [name for name, value in (("--batch-size", opts.batch_size), ("--threads", opts.threads))
           if value is not None and value < 1]  # fmt: skip
    positive = (("--poll-interval", opts.poll_interval), ("--fetch-timeout", opts.fetch_timeout),
                ("--max-image-mb", opts.max_image_mb))  # fmt: skip
    bad += [name for name, value in positive if not value > 0]  # NaN too
    if bad:
        raise ValueError(f"{', '.join(bad)} must be > 0")
    if not opts.model and not opts.pipeline:
        raise ValueError("give the pipelines to run: --pipeline FILE.yaml or --model PATH|zoo:ID")


def _load_models(opts: argparse.Namespace, device: str | None) -> list:
    """The pipelines, loaded as ``moths-serve`` loads them (one ``ServedModel`` each)."""
    from moths_framework.cli.serve import _resolve
    from moths_framework.serve import load_served_model
    from moths_framework.serve.served import load_served_pipeline
    from moths_framework.worker.devices import providers_for
    from moths_framework.zoo import allowing_insecure_http

    providers = providers_for(device)
    with allowing_insecure_http(opts.allow_insecure_http):
        models = [
            load_served_pipeline(path, providers, opts.threads, opts.batch_size)
            for path in opts.pipeline
        ]
    return models + [
        load_served_model(_resolve(spec, opts.allow_insecure_http), source=spec,
                          providers=providers, num_threads=opts.threads)
        for spec in opts.model
    ]  # fmt: skip


def _options(opts: argparse.Namespace):  # noqa: ANN202 (ServeOptions, imported lazily)
    from moths_framework.serve import ServeOptions

    hosts = [h.strip() for h in (opts.allow_hosts or "").split(",") if h.strip()]
    max_image = int(opts.max_image_mb * _MB)
    return ServeOptions(
        max_batch=opts.batch_size,
        max_in_flight=max(512, opts.batch_size),
        request_timeout=max(120.0, 3 * opts.fetch_timeout),
        fetch_timeout=opts.fetch_timeout,
        fetch_per_request=1,
        max_image_bytes=max_image,
        fetch_budget_bytes=max(256 * _MB, max_image),
        allow_hosts=hosts or None,
        deny_private_networks=opts.deny_private_networks,
    )


def _client_info(device: str | None, label: str | None) -> dict:
    try:
        version = metadata.version("moths-framework")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "software": f"moths-framework {version}",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "device": device or "auto",
        **({"worker": label} if label else {}),
    }


def main(args: list[str] | None = None) -> int:
    """Run ``moths-worker`` until stopped (SIGTERM or Ctrl-C: after the batch in hand).

    Returns:
        0 after a stop; 1 if a model fails its warm-up or the worker was stopped
        at once (a second signal); 2 on a usage error (bad URL, unreadable token
        file, bad model or option, a token Antenna refuses).
    """
    args = list(sys.argv[1:] if args is None else args)
    opts = _parser().parse_args(args)
    tag = f" [{opts.child}]" if opts.child else ""
    logging.basicConfig(format=f"{_PROG}{tag}: %(message)s", force=True)
    logging.getLogger("moths_framework").setLevel(logging.INFO)
    try:
        from moths_framework.serve.auth import read_token
        from moths_framework.worker.antenna_client import api_root
        from moths_framework.worker.devices import parse_devices

        _check_numbers(opts)
        root = api_root(opts.antenna)
        token = read_token(opts.token_file)
        devices = parse_devices(opts.devices) if opts.devices else [None]
    except ImportError as error:
        print(f"{_PROG}: error: {error}; pip install 'moths-framework[serve]'", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    if len(devices) > 1:
        return _run_children(args, devices)
    return _run_one(opts, root, token, devices[0])


def _run_children(args: list[str], devices: list[str]) -> int:
    from moths_framework.worker.devices import child_command, cpu_threads, run_children

    labels = [f"{i + 1}/{len(devices)} {d}" for i, d in enumerate(devices)]
    threads = cpu_threads(devices)
    commands = []
    for i, (device, label) in enumerate(zip(devices, labels, strict=True)):
        extra = ["--no-register"] if i > 0 else []  # one registration is enough
        if device == "cpu" and threads and "--threads" not in args:
            extra += ["--threads", str(threads)]
        commands.append(child_command([*args, *extra], device, label))
    print(f"{_PROG}: {len(devices)} worker processes: {', '.join(devices)}", flush=True)
    return run_children(commands, labels)


def _run_one(opts: argparse.Namespace, root: str, token: str, device: str | None) -> int:
    from moths_framework.worker.antenna_client import AntennaClient, AntennaRefused
    from moths_framework.worker.devices import use_device
    from moths_framework.worker.pull import PullWorker, WorkerFailed, WorkerSettings

    try:
        use_device(device)
        models = _load_models(opts, device)
        options = _options(opts)
    except (OSError, ValueError) as error:  # ModelFormatError is a ValueError
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    settings = WorkerSettings(
        service_name=opts.name or f"{_PROG} ({socket.gethostname()})",
        batch_size=opts.batch_size,
        poll_interval=opts.poll_interval,
        register=not opts.no_register,
        projects=tuple(opts.project),
    )
    tag = f" [{opts.child}]" if opts.child else ""
    from moths_framework.cli.serve import _stages

    for model in models:
        print(f"{_PROG}{tag}: pipeline {model.slug} <- {_stages(model)}", flush=True)
    print(f"{_PROG}{tag}: pulling from {root} as {settings.service_name!r}", flush=True)

    parent = os.getppid()

    async def work() -> bool:
        from moths_framework.worker.devices import stop_when_orphaned
        from moths_framework.worker.pull import run_until_signalled

        client = AntennaClient(root, token, _client_info(device, opts.child))
        worker = PullWorker(client, models, options, settings)
        watch = asyncio.create_task(stop_when_orphaned(parent, worker.request_stop)) \
            if opts.child else None  # fmt: skip
        try:
            return await run_until_signalled(worker)
        finally:
            if watch is not None:
                watch.cancel()
            await client.aclose()

    try:
        graceful = asyncio.run(work())
    except (AntennaRefused, ValueError) as error:  # ValueError: two pipelines, one slug
        print(f"{_PROG}{tag}: error: {error}", file=sys.stderr)
        return 2
    except WorkerFailed as error:
        print(f"{_PROG}{tag}: error: {error}", file=sys.stderr)
        return 1
    return 0 if graceful else 1


if __name__ == "__main__":
    sys.exit(main())
