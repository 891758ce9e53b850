"""/process with Antenna's detections, and pipelines from YAML (detector, filter, classifier).

The models are made so that what each says is known from the pixels
(helpers.pipeline_models, helpers.onnx_detectors): the grid detector's boxes are the
bright cells painted on a dark sheet, the classifier calls a bright crop ``Aus alpha``
and a dark one ``Cus delta``, the filter calls a green crop ``nonmoth``. Every body is
parsed with Antenna's schemas as written in helpers.antenna_schemas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.antenna_schemas import (
    PipelineRequest,
    PipelineResultsResponse,
    ProcessingServiceInfoResponse,
    antenna_detection,
    antenna_request,
    parses_unchanged,
)
from helpers.image_host import ImageHost
from helpers.image_samples import encode
from helpers.onnx_detectors import GRID, grid_detector, paint_cells, sheet
from helpers.pipeline_models import (
    BRIGHT_SPECIES,
    DARK_SPECIES,
    LEAF,
    brightness_classifier,
    leaf_filter,
    pipeline_file,
)
from helpers.running_server import Running, running
from PIL import Image

from moths_framework.inference.pipeline import crop_box
from moths_framework.serve import ServeOptions, create_app, load_served_model
from moths_framework.serve.served import load_served_pipeline

WIDTH, HEIGHT = 640, 480
CELL = (WIDTH // GRID[0], HEIGHT // GRID[1])  # 32 x 48 frame pixels
GREY_CELLS = [(2, 1), (10, 6)]
LEAF_CELL = (15, 3)
BRIGHT_BOX = (66.5, 50.25, 94.0, 70.0)  # inside grey cell (2, 1), its bright upper half
DARK_BOX = (500.0, 400.0, 540.0, 440.0)  # the bare sheet


def frame_png() -> bytes:
    pixels = paint_cells(sheet(WIDTH, HEIGHT), GREY_CELLS)
    column, row = LEAF_CELL
    pixels[row * CELL[1] : (row + 1) * CELL[1], column * CELL[0] : (column + 1) * CELL[0]] = LEAF
    return encode(Image.fromarray(pixels), "PNG")


def cell_box(column: int, row: int) -> tuple[float, float, float, float]:
    return (column * CELL[0], row * CELL[1], (column + 1) * CELL[0], (row + 1) * CELL[1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipeline-models")
    return {
        "classifier": brightness_classifier(folder / "bright.onnx"),
        "filter": leaf_filter(folder / "leaf-filter.onnx"),
        "detector": grid_detector(folder / "grid.onnx"),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def server(files: dict[str, Path]) -> Iterator[Running]:
    folder = files["folder"]
    full = pipeline_file(
        folder / "full.yaml", files["classifier"], files["detector"], files["filter"],
        "name: Grid, leaf filter, brightness\ndescription: test pipeline",
    )  # fmt: skip
    filtered = pipeline_file(folder / "filtered.yaml", files["classifier"], None, files["filter"])
    models = [
        load_served_model(files["classifier"]),  # slug "bright": whole image
        load_served_pipeline(full, providers="cpu"),  # slug "full"
        load_served_pipeline(filtered, providers="cpu"),  # slug "filtered": no detector
    ]
    options = ServeOptions(fetch_timeout=2, max_wait_ms=2, max_batch=8)
    with running(create_app(models, options)) as live:
        yield live


@pytest.fixture()
def host() -> Iterator[ImageHost]:
    served = ImageHost()
    yield served
    served.close()


def post(server: Running, body: dict) -> PipelineResultsResponse:
    PipelineRequest.model_validate(body)  # what we send is what Antenna sends
    response = httpx.post(f"{server.url}/process", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return parses_unchanged(PipelineResultsResponse, response.json())


def species(detection) -> str:  # noqa: ANN001
    (terminal,) = [c for c in detection.classifications if c.terminal]
    return terminal.classification


def bbox(detection) -> tuple[float, ...]:  # noqa: ANN001
    return (detection.bbox.x1, detection.bbox.y1, detection.bbox.x2, detection.bbox.y2)


# --- Antenna's detections on a whole-image pipeline ---


def test_each_request_detection_is_its_crop_classified_and_the_image_fetched_once(
    server: Running, host: ImageHost
) -> None:
    image = ("7", host.add("/frames/a.png", frame_png()))
    sent = [
        antenna_detection(image, BRIGHT_BOX, algorithm=("Their detector", "their-det-1")),
        antenna_detection(image, DARK_BOX, algorithm=("Their detector", "their-det-2")),
        antenna_detection(image, cell_box(10, 6), algorithm=("Other detector", "other-det")),
    ]
    result = post(server, antenna_request("bright", [image], sent))
    assert result.errors == []
    assert [d.source_image_id for d in result.detections] == ["7"] * 3
    assert [bbox(d) for d in result.detections] == [BRIGHT_BOX, DARK_BOX, cell_box(10, 6)]
    assert [d.algorithm.key for d in result.detections] == [
        "their-det-1",
        "their-det-2",
        "other-det",
    ]
    assert [species(d) for d in result.detections] == [BRIGHT_SPECIES, DARK_SPECIES, BRIGHT_SPECIES]
    for detection in result.detections:
        assert [c.algorithm.key for c in detection.classifications] == [
            f"bright-{rank}" for rank in ("species", "group", "family", "genus")
        ]
    assert [path for path, _ in host.requests] == ["/frames/a.png"]  # fetched once


def test_a_request_box_is_cut_as_the_offline_pipeline_cuts_it(
    server: Running, host: ImageHost, files: dict[str, Path]
) -> None:
    """Slivers on a noise frame: resized whole they differ from the offline cut by a grey
    level here and there, which shows in the logits (the model is 8 x the mean grey)."""
    noise = np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame = Image.fromarray(noise)
    image = ("9", host.add("/frames/noise.png", encode(frame, "PNG")))
    boxes = [(20.0, 30.0, 26.0, 470.0), (10.0, 200.0, 630.0, 203.5), (100.0, 100.0, 160.0, 150.0)]
    result = post(
        server, antenna_request("bright", [image], [antenna_detection(image, b) for b in boxes])
    )
    assert result.errors == []
    classifier = load_served_model(files["classifier"]).classifier
    offline = classifier.logits(
        np.stack([classifier.crop_input(frame, crop_box(b, 0, WIDTH, HEIGHT)) for b in boxes])
    )
    for n, detection in enumerate(result.detections):
        for c in detection.classifications:
            rank = c.algorithm.key.removeprefix("bright-")
            np.testing.assert_allclose(c.logits, offline[rank][n], rtol=0, atol=1e-6)


def test_a_bad_box_or_image_fails_alone(server: Running, host: ImageHost) -> None:
    good = ("1", host.add("/frames/good.png", frame_png()))
    gone = ("2", host.url("/frames/missing.png"))
    sent = [
        antenna_detection(good, (50.0, 60.0, 40.0, 80.0)),  # x2 < x1
        antenna_detection(good, BRIGHT_BOX),
        antenna_detection(good, (700.0, 10.0, 720.0, 30.0)),  # right of a 640-wide image
        antenna_detection(gone, BRIGHT_BOX),
        antenna_detection(good, DARK_BOX),
    ]
    result = post(server, antenna_request("bright", [good, gone], sent))
    assert [bbox(d) for d in result.detections] == [BRIGHT_BOX, DARK_BOX]
    assert [species(d) for d in result.detections] == [BRIGHT_SPECIES, DARK_SPECIES]
    errors = [(e["image_id"], e["error"]) for e in result.errors]
    assert errors[:2] == [
        ("1", "detection 1: bbox 50,60,40,80 is empty (x2 > x1 and y2 > y1 are needed)"),
        ("1", "detection 3: bbox 700,10,720,30 is outside the 640x480 image"),
    ]
    assert len(errors) == 3 and errors[2][0] == "2"
    assert errors[2][1].startswith("cannot fetch or decode the image at this URL")


def test_a_crop_url_is_classified_instead_of_the_box_and_a_missing_one_falls_back(
    server: Running, host: ImageHost
) -> None:
    image = ("5", host.add("/frames/c.png", frame_png()))
    white = host.add("/crops/white.png", encode(Image.new("RGB", (20, 20), "white"), "PNG"))
    missing = host.url("/crops/not-cut-yet.png")
    only_crop = post(
        server, antenna_request("bright", [image], [antenna_detection(image, DARK_BOX, white)])
    )
    (detection,) = only_crop.detections
    assert species(detection) == BRIGHT_SPECIES  # the crop's pixels, not the dark box's
    assert bbox(detection) == DARK_BOX and detection.crop_image_url == white
    assert not host.asked_for("/frames/c.png")  # the source image was not needed
    fallback = post(
        server, antenna_request("bright", [image], [antenna_detection(image, DARK_BOX, missing)])
    )
    (detection,) = fallback.detections
    assert species(detection) == DARK_SPECIES and fallback.errors == []
    assert host.asked_for("/frames/c.png")


# --- a pipeline file: detector, filter, classifier ---


def test_info_lists_the_detector_the_filter_and_the_ranks(
    server: Running, files: dict[str, Path]
) -> None:
    info = parses_unchanged(ProcessingServiceInfoResponse, httpx.get(f"{server.url}/info").json())
    whole, full, filtered = info.pipelines
    assert [a.key for a in filtered.algorithms][:2] == ["whole-image", "filtered-filter"]
    assert [a.key for a in whole.algorithms][0] == "whole-image"
    assert (full.slug, full.name, full.description) == ("full", "Grid, leaf filter, brightness",
                                                        "test pipeline")  # fmt: skip
    detector, filter_, *ranks = full.algorithms
    assert (detector.key, detector.task_type) == ("full-detector", "localization")
    assert detector.version == int(sha256(files["detector"])[:7], 16)
    assert detector.version_name == f"sha256:{sha256(files['detector'])[:12]}"
    assert (filter_.key, filter_.task_type) == ("full-filter", "classification")
    assert filter_.version == int(sha256(files["filter"])[:7], 16)
    assert filter_.category_map.labels == ["Other", "moth", "nonmoth"]
    assert [a.key for a in ranks] == [f"full-{r}" for r in ("species", "group", "family", "genus")]
    assert {a.version for a in ranks} == {int(sha256(files["classifier"])[:7], 16)}
    # the pipeline's version changes with any stage's file
    assert full.version not in (detector.version, filter_.version, ranks[0].version)


def test_the_detector_finds_the_boxes_and_a_non_moth_keeps_only_the_filter_s_answer(
    server: Running, host: ImageHost
) -> None:
    image = ("9", host.add("/frames/d.png", frame_png()))
    result = post(server, antenna_request("full", [image]))
    assert result.errors == []
    expected = sorted([cell_box(*c) for c in [*GREY_CELLS, LEAF_CELL]])
    assert sorted(bbox(d) for d in result.detections) == expected
    assert {d.algorithm.key for d in result.detections} == {"full-detector"}
    for detection in result.detections:
        first = detection.classifications[0]
        assert first.algorithm.key == "full-filter" and first.terminal is False
        assert len(first.scores) == 3 and np.isclose(sum(first.scores), 1, atol=1e-5)
        if bbox(detection) == cell_box(*LEAF_CELL):
            assert first.classification == "nonmoth"
            assert len(detection.classifications) == 1  # the filter's only
        else:
            assert first.classification == "moth"
            assert species(detection) == BRIGHT_SPECIES
            assert len(detection.classifications) == 5


def test_request_detections_skip_the_detector_for_their_image_only(
    server: Running, host: ImageHost
) -> None:
    sent_image = ("1", host.add("/frames/e.png", frame_png()))
    other = ("2", host.add("/frames/f.png", frame_png()))
    sent = [antenna_detection(sent_image, DARK_BOX, algorithm=("Theirs", "theirs"))]
    result = post(server, antenna_request("full", [sent_image, other], sent))
    first, *rest = result.detections
    assert (first.source_image_id, first.algorithm.key, bbox(first)) == ("1", "theirs", DARK_BOX)
    assert species(first) == DARK_SPECIES
    assert {d.source_image_id for d in rest} == {"2"} and len(rest) == 3
    assert {d.algorithm.key for d in rest} == {"full-detector"}


def test_more_boxes_than_images_admitted_wait_for_their_turn(
    files: dict[str, Path], host: ImageHost
) -> None:
    image = ("1", host.add("/frames/g.png", frame_png()))
    options = ServeOptions(max_in_flight=2, max_wait_ms=2, max_batch=2)
    with running(create_app([load_served_model(files["classifier"])], options)) as small:
        sent = [antenna_detection(image, BRIGHT_BOX), antenna_detection(image, DARK_BOX)] * 5
        result = post(small, antenna_request("bright", [image], sent))
        assert [species(d) for d in result.detections] == [BRIGHT_SPECIES, DARK_SPECIES] * 5
        assert small.engine.crop_slots._value == 2  # every slot given back


def test_without_a_detector_the_filter_judges_the_whole_image(
    server: Running, host: ImageHost
) -> None:
    leaf = ("leaf", host.add("/whole/leaf.png", encode(Image.new("RGB", (40, 30), LEAF), "PNG")))
    grey = ("grey", host.add("/whole/grey.png", encode(Image.new("RGB", (50, 20), "white"), "PNG")))
    result = post(server, antenna_request("filtered", [leaf, grey]))
    assert result.errors == []
    first, second = result.detections
    assert (first.source_image_id, bbox(first), first.algorithm.key) == (
        "leaf", (0, 0, 40, 30), "whole-image"
    )  # fmt: skip
    assert [c.classification for c in first.classifications] == ["nonmoth"]
    assert (second.source_image_id, bbox(second)) == ("grey", (0, 0, 50, 20))
    assert second.classifications[0].classification == "moth"
    assert species(second) == BRIGHT_SPECIES
