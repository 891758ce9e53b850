"""A night end to end: moths-infer --detector, moths-track, moths-count, moths-dwc.

Two moths sit on the sheet (painted cells the grid detector boxes exactly) through
three frames whose names carry their times. The oracle is what was painted: two
individuals in six detections, one night, one deployment; and the classifier that
ran is the file whose sha256 the archive must name, through the run.json chain.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dwca.read import DwCAReader
from helpers.onnx_detectors import grid_detector, paint_cells, save_frame, sheet
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata

from moths_framework.cli.count import main as count
from moths_framework.cli.dwc import main as dwc
from moths_framework.cli.infer import main as infer
from moths_framework.cli.track import main as track

TIMES = ("20240701220000", "20240701221000", "20240701222000")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_archive_names_the_models_behind_each_count(tmp_path, capsys) -> None:
    detector = grid_detector(tmp_path / "grid.onnx")
    classifier = export_model(tiny_net(), tmp_path / "tiny.onnx", classifier_metadata())
    frames = tmp_path / "garden"
    frames.mkdir()
    for stamp in TIMES:  # two moths, still, on every frame
        save_frame(frames / f"{stamp}.png", paint_cells(sheet(), {(3, 3): 240, (12, 6): 200}))
    deployments = tmp_path / "deployments.csv"
    deployments.write_text("deployment,latitude,longitude,trap_type\ngarden,52,5,LepiLED\n")
    detections, tracks = tmp_path / "detections.csv", tmp_path / "tracks.csv"
    occurrences, archive = tmp_path / "occurrences.csv", tmp_path / "archive.zip"
    args = ["--detector", str(detector), "--model", str(classifier), str(frames)]
    assert infer([*args, "--output", str(detections), "--no-progress"]) == 0
    places = ["--deployments", str(deployments)]
    assert track([str(detections), *places, "--output", str(tracks), "--no-progress"]) == 0
    assert count([str(tracks), *places, "--output", str(occurrences)]) == 0
    assert dwc([str(occurrences), *places, "--output", str(archive), "--include-other"]) == 0

    with DwCAReader(str(archive)) as reader:
        rows = [{k.rsplit("/", 1)[1]: v for k, v in row.data.items()} for row in reader]
    assert sum(int(r["individualCount"]) for r in rows) == 2  # two moths painted
    assert {r["eventID"] for r in rows} == {"garden/2024-07-01"}
    assert all(_sha256(classifier) in r["identifiedBy"] for r in rows)
    record = json.loads(Path(f"{archive}.run.json").read_text(encoding="utf-8"))
    # the chain: moths-dwc <- moths-count <- moths-track <- moths-infer (both models)
    chain = record["inputs"][0]["run"]
    assert chain["command"] == "moths-count"
    tracked = chain["inputs"][0]["run"]
    assert tracked["command"] == "moths-track"
    inferred = next(i["run"] for i in tracked["inputs"] if i["path"] == str(detections))
    assert {m["role"]: m["sha256"] for m in inferred["models"]} == {
        "detector": _sha256(detector),
        "classifier": _sha256(classifier),
    }
    assert "2 individuals" in capsys.readouterr().out

    # the same night as a sampling event, from the nights.csv moths-track wrote
    events = tmp_path / "events.zip"
    nights = ["--core", "event", "--nights", str(tmp_path / "nights.csv")]
    assert (
        dwc([str(occurrences), *places, "--output", str(events), "--include-other", *nights]) == 0
    )
    with DwCAReader(str(events)) as reader:
        found = {row.id: [e.data for e in row.extensions] for row in reader}
    assert sorted(found) == ["garden", "garden/2024-07-01"]
    count_term = "http://rs.tdwg.org/dwc/terms/individualCount"
    assert sum(int(o[count_term]) for o in found["garden/2024-07-01"]) == 2
