"""The content-addressed zoo cache: ``$MOTHS_CACHE/zoo/blobs/<sha256><suffix>``.

A file's name is its own sha256, so the cache verifies itself. Downloads go
to a private temporary folder and are renamed into place only after their
hash and size check out: an interrupted or mismatched download leaves nothing
in ``blobs/``, and the leftovers of a killed process are removed by the next
fetch of the same file (under its lock) or by :func:`verify_cache`.

No path or glob is ever built from index text other than a sha256 that is 64
lowercase hex digits (and a file suffix of letters and digits): the index is
validated when read, and this module checks again, so an index naming
``"../../x/*"`` as a hash cannot reach outside the cache.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pooch
from filelock import FileLock, Timeout

from moths_framework.user_cache import CACHE_ENV, cache_root
from moths_framework.zoo.errors import ZooChecksumError, ZooError, ZooOfflineError
from moths_framework.zoo.index import OFFLINE_ENV, ZooEntry, ZooFile, is_offline
from moths_framework.zoo.transport import check_transport

__all__ = [
    "CACHE_ENV",
    "CacheCheck",
    "cache_root",
    "cached_path",
    "fetch_file",
    "verify_cache",
]

pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading ..." line duplicates ours
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,16}")


def _blobs() -> Path:
    return cache_root() / "zoo" / "blobs"


def _tmp() -> Path:
    return cache_root() / "zoo" / "tmp"


def _digest(sha256: object) -> str:
    """``sha256`` when it is a lowercase hex digest: the only index text a cache path holds."""
    if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
        raise ZooError(
            f"{sha256!r} is not a sha256 digest (64 lowercase hex digits); "
            "the zoo cache builds no path from it"
        )
    return sha256


def _blob_name(file: ZooFile) -> str:
    """``<sha256><suffix>``; a suffix other than ``.`` and letters or digits is dropped."""
    suffix = Path(file.name).suffix
    return _digest(file.sha256) + (suffix if _SUFFIX.fullmatch(suffix) else "")


def cached_path(file: ZooFile) -> Path:
    """Where ``file`` lives in the cache (whether or not it is there yet).

    Raises:
        ZooError: its sha256 is not a hex digest.
    """
    return _blobs() / _blob_name(file)


def _lock(sha256: str) -> FileLock:
    locks = cache_root() / "zoo" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{_digest(sha256)}.lock"))


def fetch_file(entry: ZooEntry, file: ZooFile, progress: bool = False) -> Path:
    """The cached, verified copy of one of ``entry``'s files; fetched when missing.

    http(s) files are downloaded with pooch (which checks the sha256); local
    and ``file://`` files are copied and hashed. Either way the file enters
    the cache only once its sha256 and size match the index.

    Raises:
        ZooChecksumError: the hash or size differs (the message names both hashes).
        ZooOfflineError: ``MOTHS_OFFLINE=1`` and an http(s) file is not cached.
        ZooInsecureError: the file is plain http:// and that was not allowed.
        ZooError: the source cannot be read or downloaded, or its sha256 is no digest.
    """
    target = cached_path(file)
    source = entry.source_of(file)
    check_transport(source, f"zoo file of {entry.ref}")
    if target.is_file():
        return target
    remote = urlparse(source).scheme in ("http", "https")
    if remote and is_offline():
        raise ZooOfflineError(
            f"{OFFLINE_ENV}=1 and {entry.ref} ({file.name}, sha256 {file.sha256[:12]}...) is not "
            f"in the cache {cache_root()}; run `moths-zoo pull {entry.ref}` with network access"
        )
    with _lock(file.sha256):
        if target.is_file():  # another process fetched it while we waited
            return target
        _remove_leftovers(file.sha256)
        _tmp().mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{file.sha256}-", dir=_tmp()))
        try:
            fetched = work / target.name
            if remote:
                _download(source, file, fetched, progress)
            else:
                _copy(source, fetched)
            _check(fetched, file, source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(fetched, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _download(url: str, file: ZooFile, fetched: Path, progress: bool) -> None:
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{file.sha256}",
            fname=fetched.name,
            path=fetched.parent,
            progressbar=progress,
        )
    except ValueError as err:  # pooch's hash mismatch; it deleted the download
        actual = str(err).split(" but got ")[-1].split(".")[0] if " but got " in str(err) else "?"
        raise ZooChecksumError(_mismatch(url, file.sha256, actual)) from err
    except Exception as err:  # requests' connection errors, HTTP errors, ...
        raise ZooError(f"cannot download {url}: {type(err).__name__}: {err}") from err


def _copy(path: str, copied: Path) -> None:
    source = Path(path)
    if not source.is_file():
        raise ZooError(f"zoo file {source} not found")
    shutil.copyfile(source, copied)


def _check(path: Path, file: ZooFile, source: str) -> None:
    actual = pooch.file_hash(str(path), alg="sha256")
    if actual != file.sha256:
        raise ZooChecksumError(_mismatch(source, file.sha256, actual))
    size = path.stat().st_size
    if size != file.size:
        raise ZooChecksumError(f"{source}: size {size} bytes, the index says {file.size}")


def _mismatch(source: str, expected: str, actual: str) -> str:
    return (
        f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}; "
        "nothing was cached (the file is corrupt or the index is out of date)"
    )


def _remove_leftovers(sha256: str) -> None:
    """Temporary folders of earlier, killed fetches of this file (call under its lock)."""
    if _tmp().is_dir():
        for stale in _tmp().glob(f"{_digest(sha256)}-*"):
            shutil.rmtree(stale, ignore_errors=True)


@dataclass(frozen=True)
class CacheCheck:
    """The outcome of re-hashing one cached file."""

    path: Path
    ok: bool
    actual: str


def verify_cache(files: list[ZooFile] | None = None) -> list[CacheCheck]:
    """Re-hash cached files (``files``, or every one); a corrupt one is deleted.

    Also removes temporary leftovers of killed downloads no process is using.
    """
    blobs = _blobs()
    if files is None:
        paths = sorted(p for p in blobs.glob("*") if p.is_file()) if blobs.is_dir() else []
    else:
        paths = [cached_path(f) for f in files if cached_path(f).is_file()]
    checks = []
    for path in paths:
        expected = path.name.split(".")[0]
        actual = pooch.file_hash(str(path), alg="sha256")
        if actual != expected:
            path.unlink(missing_ok=True)
        checks.append(CacheCheck(path, actual == expected, actual))
    if files is None and _tmp().is_dir():
        for stale in _tmp().iterdir():
            if not _DIGEST.fullmatch(stale.name.split("-")[0]):
                continue  # not a fetch's folder: leave it
            try:
                with _lock(stale.name.split("-")[0]).acquire(timeout=0):
                    shutil.rmtree(stale, ignore_errors=True)
            except Timeout:
                pass  # a fetch is running
    return checks
