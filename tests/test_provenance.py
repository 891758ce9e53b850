"""run.json sidecars: what they hold, that two runs differ, and the chain back to the models."""

from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from datetime import datetime
from importlib import metadata

from helpers.paths import REPO

from moths_framework.output_folders import MARKER
from moths_framework.provenance import (
    Run,
    model_record,
    models_in,
    read_provenance,
    sidecar_path,
    write_provenance,
)

DEMO_ONNX = REPO / "zoo" / "nl-moths-demo" / "1.0.0" / "model.onnx"


def _parse(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp  # UTC, said so
    return datetime.fromisoformat(stamp[:-1] + "+00:00")


def test_sidecar_beside_a_file_and_inside_a_folder(tmp_path):
    (tmp_path / "out").mkdir()
    assert sidecar_path(tmp_path / "a.csv") == tmp_path / "a.csv.run.json"
    assert sidecar_path(tmp_path / "out") == tmp_path / "out" / "run.json"


def test_record_holds_the_run(tmp_path):
    output = tmp_path / "occurrences.csv"
    output.write_text("a,b\n1,2\n", encoding="utf-8")
    argv = ["tracks.csv", "--output", "my file.csv"]
    sidecar = write_provenance(output, "moths-count", argv=argv, settings={"include_other": False})
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    assert sidecar == tmp_path / "occurrences.csv.run.json"
    assert uuid.UUID(record["run_id"]).version == 4
    assert shlex.split(record["command_line"]) == ["moths-count", *argv]
    assert _parse(record["started"]) <= _parse(record["finished"])
    assert record["output"]["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert record["software"]["moths-framework"] == metadata.version("moths-framework")
    assert record["software"]["numpy"] == metadata.version("numpy")
    assert record["settings"] == {"include_other": False}
    # the sidecar is the command's own file: a later run may overwrite it
    written = json.loads((tmp_path / MARKER).read_text(encoding="utf-8"))["files"]
    assert written["occurrences.csv.run.json"] == "moths-count"


def test_two_runs_are_told_apart(tmp_path):
    output = tmp_path / "x.csv"
    output.write_text("x\n", encoding="utf-8")
    write_provenance(output, "moths-count", argv=[])
    first = read_provenance(output)
    write_provenance(output, "moths-count", argv=[])
    second = read_provenance(output)
    assert first["run_id"] != second["run_id"]


def test_zoo_model_is_named_by_id_version_and_sha256():
    index = json.loads((REPO / "zoo" / "index.json").read_text(encoding="utf-8"))
    entry = next(m for m in index["models"] if m["id"] == "nl-moths-demo")
    onnx = next(f for f in entry["files"] if f["role"] == "onnx")
    record = model_record("classifier", DEMO_ONNX, given="zoo:nl-moths-demo")
    assert (record["zoo_id"], record["zoo_version"]) == ("nl-moths-demo", entry["version"])
    assert record["sha256"] == onnx["sha256"]
    assert record["size"] == onnx["size"]
    assert record["name"] == "nl-moths-demo"


def test_a_file_model_has_its_sha256_and_no_zoo(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really a model")
    record = model_record("detector", model, card={"exported_at": "2026-01-01T00:00:00+00:00"})
    assert record["sha256"] == hashlib.sha256(b"not really a model").hexdigest()
    assert "zoo_id" not in record
    assert record["version"] == "2026-01-01T00:00:00+00:00"


def test_chain_carries_the_models_forward(tmp_path):
    detections = tmp_path / "detections.csv"
    detections.write_text("frame\n", encoding="utf-8")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights")
    write_provenance(detections, "moths-infer", argv=[], models=[model_record("classifier", model)])
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("frame,track\n", encoding="utf-8")
    write_provenance(tracks, "moths-track", argv=[], inputs=[detections])
    run = Run("moths-count", [])
    run.add_input(tracks)
    counts = tmp_path / "occurrences.csv"
    counts.write_text("taxon\n", encoding="utf-8")
    run.write(counts)
    record = read_provenance(counts)
    assert record["inputs"][0]["sha256"] == hashlib.sha256(b"frame,track\n").hexdigest()
    assert record["inputs"][0]["run"]["command"] == "moths-track"
    assert [m["sha256"] for m in models_in(record)] == [hashlib.sha256(b"weights").hexdigest()]


def test_unreadable_sidecar_is_none(tmp_path):
    (tmp_path / "a.csv.run.json").write_text("{not json", encoding="utf-8")
    assert read_provenance(tmp_path / "a.csv") is None
    assert read_provenance(tmp_path / "b.csv") is None


def test_the_reference_page_names_every_field(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights")
    output = tmp_path / "x.csv"
    output.write_text("x\n", encoding="utf-8")
    record = Run("moths-count", [])
    record.add_model("classifier", model, given="zoo:nl-moths-demo", card={"backbone": "b"})
    record.add_input(output)
    written = record.record(output)
    names = [*written, *written["models"][0], *written["inputs"][0], *written["output"]]
    text = (REPO / "docs" / "reference" / "provenance.md").read_text(encoding="utf-8")
    assert not [name for name in names if f"`{name}`" not in text]


def test_a_zoo_index_gone_after_the_run_still_gives_a_record(monkeypatch, tmp_path):
    monkeypatch.setenv("MOTHS_ZOO_INDEX", str(tmp_path / "no-index.json"))
    record = model_record("classifier", DEMO_ONNX, given="zoo:nl-moths-demo@1.0.0")
    assert (record["zoo_id"], record["zoo_version"]) == ("nl-moths-demo", "1.0.0")
    assert record["sha256"] == hashlib.sha256(DEMO_ONNX.read_bytes()).hexdigest()
