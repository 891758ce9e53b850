"""The one atomic-write helper: unique temporary names, the umask's mode, nothing left behind."""

from __future__ import annotations

import os
import stat

import pytest

from moths_framework import atomic_files
from moths_framework.atomic_files import write_bytes_atomically, write_text_atomically


def test_every_write_uses_its_own_temporary_name(tmp_path, monkeypatch):
    used: list[str] = []
    replace = os.replace

    def recording_replace(src, dst):
        used.append(os.path.basename(src))
        replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", recording_replace)
    (tmp_path / ".manifest.csv.tmp").mkdir()  # a fixed temporary name would collide with this
    for text in ("one", "two"):
        write_text_atomically(tmp_path / "manifest.csv", text)
    assert (tmp_path / "manifest.csv").read_text() == "two"
    assert len(set(used)) == 2 and all(n.startswith(".manifest.csv.") for n in used)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".manifest.csv.tmp", "manifest.csv"]


def test_the_file_gets_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomically(tmp_path / "model.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.bin").stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    write_text_atomically(tmp_path / "a.csv", "old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(tmp_path / "a.csv", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]
    assert (tmp_path / "a.csv").read_text() == "old"


def test_a_file_a_library_wrote_private_gets_the_umask_mode(tmp_path):
    from moths_framework.atomic_files import replaced_atomically

    old = os.umask(0o022)
    try:
        with replaced_atomically(tmp_path / "model.bin") as temporary:
            temporary.unlink()  # as safetensors does: its own file, mode 0600
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"weights")
            os.close(fd)
    finally:
        os.umask(old)
    assert (tmp_path / "model.bin").read_bytes() == b"weights"
    assert (tmp_path / "model.bin").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]
