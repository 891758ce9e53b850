"""moths-infer: inputs, output files, errors and exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers.onnx_models import (
    constant_net,
    export_model,
    look_alike_logits,
    metadata,
    save_image,
    tiny_net,
)

from moths_framework.cli.infer import main
from moths_framework.inference import OTHER_PREDICTION

COLUMNS = [
    "path",
    "species", "species_prob", "group", "group_prob",
    "family", "family_prob", "genus", "genus_prob",
    "prediction", "prediction_rank", "prediction_prob", "confident", "error",
]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_net(), tmp_path_factory.mktemp("m") / "tiny.onnx", metadata())


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder with nested images, a hidden file and a non-image file."""
    root = tmp_path / "images"
    (root / "b" / "deeper").mkdir(parents=True)
    save_image(root / "b" / "deeper" / "3.png", seed=3)
    save_image(root / "b" / "2.jpg", seed=2)
    save_image(root / "a.jpg", seed=1)
    save_image(root / "c.JPEG", seed=4)
    (root / ".hidden.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def run(model: Path, *args: str) -> int:
    return main(["--model", str(model), "--no-progress", *args])


def test_directory_input_to_csv(model: Path, images: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out" / "predictions.csv"
    assert run(model, str(images), "--output", str(output)) == 0
    columns, rows = read_csv(output)
    assert columns == COLUMNS
    relative = [Path(row["path"]).relative_to(images).as_posix() for row in rows]
    assert relative == ["a.jpg", "b/2.jpg", "b/deeper/3.png", "c.JPEG"]
    assert all(row["error"] == "" and row["prediction"] for row in rows)
    assert all(0 <= float(row["species_prob"]) <= 1 for row in rows)
    assert "4 of 4 images classified, 0 errors, on CPUExecutionProvider" in capsys.readouterr().out
    # no temporary file left; the record of what moths-infer wrote beside it, its run.json
    written = sorted(p.name for p in output.parent.iterdir())
    assert written == [".moths-output.json", "predictions.csv", "predictions.csv.run.json"]


def test_list_file_and_bad_images(model: Path, images: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two good, three bad\nimages/a.jpg\nempty.jpg\n\n{images}/notes.txt\n")
    output = tmp_path / "predictions.csv"
    assert run(model, str(images / "a.jpg"), "--output", str(output)) == 0
    # a file moths-infer wrote, it overwrites
    args = [f"@{listing}", str(tmp_path / "missing.jpg"), str(images / "b" / "2.jpg")]
    assert run(model, *args, "--output", str(output), "--batch-size", "2") == 0
    _, rows = read_csv(output)
    assert [Path(row["path"]).name for row in rows] == [
        "a.jpg", "empty.jpg", "notes.txt", "missing.jpg", "2.jpg"
    ]  # fmt: skip
    assert [bool(row["error"]) for row in rows] == [False, True, True, True, False]
    assert rows[1]["prediction"] == "" and rows[1]["species"] == ""


def test_an_output_moths_infer_did_not_write_is_left_alone(
    model: Path, images: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "notes.csv"
    output.write_text("my own notes\n")
    assert run(model, str(images), "--output", str(output)) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-infer: error: ") and err.count("\n") == 1
    assert str(output) in err and "moths-infer did not write it" in err
    assert output.read_text() == "my own notes\n"


def test_all_bad_images_exit_non_zero(model: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    output = tmp_path / "predictions.csv"
    assert run(model, str(tmp_path / "empty.jpg"), "--output", str(output)) == 1
    assert "0 of 1 images classified, 1 error," in capsys.readouterr().out
    assert read_csv(output)[1][0]["error"]


def test_jsonl_has_top_k(model: Path, images: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.jsonl"
    assert run(model, str(images / "a.jpg"), "--output", str(output), "--top-k", "3") == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 1 and list(records[0]) == [*COLUMNS, "top_k"]
    top_k = records[0]["top_k"]
    assert list(top_k) == ["species", "group", "family", "genus"]
    assert [len(v) for v in top_k.values()] == [3, 3, 3, 3]
    best = records[0]
    assert top_k["species"][0] == {"name": best["species"], "prob": best["species_prob"]}


def test_thresholds_drive_the_roll_up(model: Path, images: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.csv"
    assert run(model, str(images), "--output", str(output), "--threshold", "0") == 0
    assert {row["prediction_rank"] for row in read_csv(output)[1]} == {"species"}
    strict = "species=1,genus=1,family=1,group=1"
    assert run(model, str(images), "--output", str(output), "--thresholds", strict) == 0
    rows = read_csv(output)[1]
    assert {(row["prediction_rank"], row["confident"]) for row in rows} == {("group", "false")}


@pytest.mark.parametrize(
    ("mode", "species", "prediction"),
    [([], "Other", OTHER_PREDICTION), (["--mask-mode", "renormalize"], "Aus beta", "Aus beta")],
)
def test_mask_mode(images: Path, tmp_path: Path, mode, species, prediction) -> None:
    model = export_model(constant_net(look_alike_logits()), tmp_path / "c.onnx", metadata())
    (tmp_path / "region.txt").write_text("Aus beta\nCus delta\n")
    output = tmp_path / "predictions.csv"
    args = [str(images / "a.jpg"), "--species-list", str(tmp_path / "region.txt"), *mode]
    assert run(model, *args, "--output", str(output)) == 0
    row = read_csv(output)[1][0]
    assert (row["species"], row["prediction"], row["prediction_rank"]) == (
        species,
        prediction,
        "species",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{images}", "--model", "nowhere.onnx"], "model file nowhere.onnx not found"),
        (
            ["{images}", "--model", "{model}", "--thresholds", "species:0.5"],
            "--thresholds: expected RANK=PROBABILITY, got 'species:0.5'",
        ),
        (
            ["{images}", "--model", "{model}", "--thresholds", "species=1.5"],
            "--thresholds: threshold of 'species' must be in [0, 1], got 1.5",
        ),
        (["{images}", "--model", "{model}", "--thresholds", "kingdom=0.5"], "rank(s) kingdom"),
        (["{images}", "--model", "{model}", "--providers", "nonsense"], "nonsense not available"),
        (["{images}", "--model", "{model}", "--species-list", "{tmp}/names"], "Aus nonexistens"),
        (["{tmp}/empty_dir", "--model", "{model}"], "no image files found in"),
    ],
)
def test_usage_errors_exit_2(
    model: Path, images: Path, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "names").write_text("Aus alpha\nAus nonexistens\n")
    filled = [arg.format(model=model, images=images, tmp=tmp_path) for arg in args]
    assert main([*filled, "--output", str(tmp_path / "o.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()
