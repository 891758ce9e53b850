"""``moths-zoo``: list, show, pull, verify and add models of a zoo index."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from moths_framework import zoo
from moths_framework.model.trust import TRUST_FLAG, TRUST_HELP, trusting_checkpoints
from moths_framework.zoo.index import load_indexes
from moths_framework.zoo.transport import INSECURE_FLAG, INSECURE_HELP

_INDEX_HELP = "an index.json (or its folder) or http(s) URL; repeatable; default $MOTHS_ZOO_INDEX"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moths-zoo",
        description="Find, fetch (checksum-verified) and publish trained moth models.",
    )
    parser.add_argument("--index", action="append", metavar="URL|PATH", help=_INDEX_HELP)
    parser.add_argument(INSECURE_FLAG, action="store_true", help=INSECURE_HELP)
    # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--index", action="append", metavar="URL|PATH", help=_INDEX_HELP, default=argparse.SUPPRESS
    )
    common.add_argument(
        INSECURE_FLAG, action="store_true", help=INSECURE_HELP, default=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", parents=[common], help="models of the index(es)")
    p.add_argument("filter", nargs="?", default="", help="substring of id, title or region")
    p = sub.add_parser("show", parents=[common], help="one model's entry and cache state")
    p.add_argument("ref", metavar="ID[@VERSION]")
    p = sub.add_parser("pull", parents=[common], help="download and verify into the cache")
    p.add_argument("ref", metavar="ID[@VERSION]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = sub.add_parser("verify", parents=[common], help="re-hash cached files")
    p.add_argument("ref", nargs="?", metavar="ID[@VERSION]")
    p.add_argument("--all", action="store_true", help="every file in the cache")
    p = sub.add_parser("add", help="add an exported model to an index folder")
    p.add_argument("model", type=Path, metavar="MODEL.onnx")
    p.add_argument("--checkpoint", type=Path, help=".ckpt (stored as safetensors) or .safetensors")
    p.add_argument("--id", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--index", required=True, type=Path, metavar="DIR", help="the index folder")
    for name in ("title", "description", "intended-use", "license", "citation", "region"):
        p.add_argument(f"--{name}", default="")
    p.add_argument(
        "--created", default=None, help="date-time, e.g. 2026-01-01T00:00:00+00:00; default now"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the same id and version (new files go beside the old ones, which stay)",
    )
    p.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)
    return parser


def _list(opts: argparse.Namespace) -> int:
    rows = []
    for index in load_indexes(opts.index, zoo.cache_root()):
        for e in index.entries:
            text = " ".join(str(e.data.get(k, "")) for k in ("id", "title", "region")).lower()
            if opts.filter.lower() in text:
                size = sum(f.size for f in e.files) / 1e6
                # a detector has classes (moth, ...), not ranks of species
                species = e.data["ranks"].get("species", "?") if "ranks" in e.data else "-"
                rows.append(
                    (e.id, e.version, str(species), f"{size:.1f} MB", e.data.get("region", ""))
                )
    if not rows:
        print(f"no model matches {opts.filter!r}" if opts.filter else "the index lists no models")
        return 0
    header = ("id", "version", "species", "size", "region")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _show(opts: argparse.Namespace) -> int:
    entry = zoo.find(opts.ref, opts.index)
    shown = {k: v for k, v in entry.data.items() if k != "files"}
    print(f"{entry.ref}  (index {entry.index.location})")
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    for f in entry.files:
        state = "cached" if zoo.cached_path(f).is_file() else "not cached"
        print(f"file {f.role}: {entry.source_of(f)} ({f.size:,} B, sha256 {f.sha256}) {state}")
    return 0


def _pull(opts: argparse.Namespace) -> int:
    entry = zoo.find(opts.ref, opts.index)
    progress = not opts.no_progress and sys.stderr.isatty()
    for f in entry.files:
        path = zoo.fetch_file(entry, f, progress)
        print(f"{entry.ref} {f.role}: {path} (sha256 verified)")
    return 0


def _verify(opts: argparse.Namespace) -> int:
    if not opts.all and not opts.ref:
        raise zoo.ZooError("name a model (ID[@VERSION]) or pass --all")
    files = None if opts.all else zoo.find(opts.ref, opts.index).files
    checks = zoo.verify_cache(files)
    for c in checks:
        print(f"ok       {c.path}" if c.ok else f"CORRUPT  {c.path} (sha256 {c.actual}; removed)")
    bad = sum(not c.ok for c in checks)
    print(f"verified {len(checks)} cached file(s) in {zoo.cache_root()}: {bad} corrupt")
    return 1 if bad else 0


def _add(opts: argparse.Namespace) -> int:
    from moths_framework.export.zoo_entry import add_model

    info = {
        "id": opts.id,
        "version": opts.version,
        "title": opts.title,
        "description": opts.description,
        "intended_use": opts.intended_use,
        "license": opts.license,
        "citation": opts.citation,
        "region": opts.region,
        "created": opts.created,
    }
    with trusting_checkpoints(opts.trust_checkpoint):
        entry = add_model(opts.model, opts.index, info, opts.checkpoint, opts.force)
    print(f"added {entry['id']}@{entry['version']} to {opts.index / 'index.json'}")
    for f in entry["files"]:
        print(f"  {f['role']:<10} {f['url']} ({f['size']:,} B, sha256 {f['sha256'][:12]}...)")
    print(f"  card       {opts.index / opts.id / 'README.md'}")
    return 0


_COMMANDS = {"list": _list, "show": _show, "pull": _pull, "verify": _verify, "add": _add}


def main(args: list[str] | None = None) -> int:
    """Run one ``moths-zoo`` subcommand; exit code 2 on a user error, 1 on corrupt files."""
    opts = _parser().parse_args(args)
    try:
        with zoo.allowing_insecure_http(opts.allow_insecure_http):
            return _COMMANDS[opts.command](opts)
    except (zoo.ZooError, ValueError) as err:  # ModelFormatError is a ValueError
        print(f"moths-zoo: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
