"""``moths-zoo add`` under concurrency and failure: a locked read-modify-write of
index.json, new files written beside the old ones, the index switched last."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import onnx
import pooch
import pytest

from moths_framework import zoo
from moths_framework.export import zoo_entry

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "zoo" / "nl-moths-demo" / "1.0.0"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOTHS_OFFLINE", "1")
    monkeypatch.delenv("MOTHS_ZOO_INDEX", raising=False)
    return tmp_path / "cache"


def _info(model_id: str, version: str = "1.0") -> dict:
    return {"id": model_id, "version": version, "created": "2026-01-01T00:00:00+00:00"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _other_onnx(path: Path) -> Path:
    """The demo model with other bytes (a doc string), still a moths model."""
    model = onnx.load(str(DEMO_DIR / "model.onnx"))
    model.doc_string = "retrained"
    onnx.save(model, str(path))
    return path


def test_concurrent_adds_both_end_up_in_the_index(tmp_path, monkeypatch):
    index = tmp_path / "zoo"
    real_entry = zoo_entry._entry

    def slow_entry(*args, **kwargs):  # widen the window between reading and writing the index
        time.sleep(0.5)
        return real_entry(*args, **kwargs)

    monkeypatch.setattr(zoo_entry, "_entry", slow_entry)
    errors: list[BaseException] = []

    def add(model_id: str) -> None:
        try:
            zoo_entry.add_model(DEMO_DIR / "model.onnx", index, _info(model_id))
        except BaseException as err:  # noqa: BLE001 (reported by the assertion below)
            errors.append(err)

    threads = [threading.Thread(target=add, args=(name,)) for name in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    data = json.loads((index / "index.json").read_text())
    assert sorted(e["id"] for e in data["models"]) == ["alpha", "beta"]
    zoo.validate_index(data, str(index / "index.json"))


def test_a_failed_force_leaves_the_old_entry_and_its_files(tmp_path, monkeypatch):
    index = tmp_path / "zoo"
    zoo_entry.add_model(
        DEMO_DIR / "model.onnx", index, _info("team"), DEMO_DIR / "model.safetensors"
    )
    before = _files(index)
    other = _other_onnx(tmp_path / "other.onnx")

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(zoo_entry, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        zoo_entry.add_model(other, index, _info("team"), force=True)
    assert _files(index) == before  # nothing replaced, nothing left behind
    assert zoo.pull("team", [str(index)])  # the old entry still verifies

    monkeypatch.undo()
    entry = zoo_entry.add_model(other, index, _info("team"), force=True)
    onnx_url = entry["files"][0]["url"]
    assert onnx_url != "team/1.0/model.onnx"  # written beside the old file, not over it
    assert (index / "team" / "1.0" / "model.onnx").read_bytes() == before["team/1.0/model.onnx"]
    assert pooch.file_hash(str(index / onnx_url)) == entry["files"][0]["sha256"]
    assert zoo.pull("team", [str(index)])["onnx"].read_bytes() == other.read_bytes()


def test_force_with_the_same_files_keeps_their_names(tmp_path):
    index = tmp_path / "zoo"
    first = zoo_entry.add_model(DEMO_DIR / "model.onnx", index, _info("team"))
    again = zoo_entry.add_model(DEMO_DIR / "model.onnx", index, _info("team"), force=True)
    assert again["files"] == first["files"]
    assert sorted(_files(index / "team" / "1.0")) == ["model.onnx"]


def test_add_refuses_an_id_or_version_that_is_not_a_safe_name(tmp_path):
    for info in (_info("../escape"), _info("ok", "1/../../x")):
        with pytest.raises(zoo.ZooError, match="does not match"):
            zoo_entry.add_model(DEMO_DIR / "model.onnx", tmp_path / "zoo", info)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
