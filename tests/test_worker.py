"""moths-worker against a stand-in Antenna (helpers.antenna_server, written from Antenna's
views and schemas) on a real port: registration, jobs, claims, results, at-least-once
delivery, 503s, dropped connections and slow images. Every body the worker posts is
parsed by Antenna's own models before the server accepts it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from helpers.antenna_schemas import PipelineResultsError, PipelineResultsResponse
from helpers.antenna_server import AntennaServer
from helpers.worker_runs import demo_model, moth_images, run_worker

from moths_framework.inference import OnnxClassifier
from moths_framework.serve import ServeOptions
from moths_framework.zoo import resolve

SLUG = "nl-moths-demo"


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture
def antenna() -> Iterator[AntennaServer]:
    server = AntennaServer(projects=(1, 2))
    yield server
    server.close()


def _host_images(host, prefix: str, count: int, delay: float = 0.0) -> list[tuple[str, str]]:
    """(image id, URL) of ``count`` test_data moths on the image host."""
    return [
        (str(100 + i), host.add(f"/{prefix}/{i}.jpg", path.read_bytes(), delay))
        for i, path in enumerate(moth_images(count))
    ]


def _named_algorithms(result: PipelineResultsResponse) -> set[str]:
    """The keys of the algorithms a result names (Antenna saves only registered ones)."""
    return {d.algorithm.key for d in result.detections} | {
        c.algorithm.key for d in result.detections for c in d.classifications
    }


def _registered(body: dict) -> set[str]:
    return {a["key"] for pipeline in body["pipelines"] for a in pipeline["algorithms"]}


def _species(result: PipelineResultsResponse) -> str:
    (detection,) = result.detections
    (terminal,) = [c for c in detection.classifications if c.terminal]
    return terminal.classification


def test_a_job_is_registered_claimed_processed_and_answered(antenna, host, model):
    images = _host_images(host, "job", 9)
    missing = ("999", host.url("/job/missing.jpg"))
    antenna.add_job(7, SLUG, [*images, missing])
    worker = run_worker(antenna, [model])

    assert antenna.refused == []
    assert [p for p, _ in antenna.registrations] == [1, 2]  # every project the token sees
    for _, body in antenna.registrations:
        assert body["processing_service_name"] == "test worker"
        assert [p["slug"] for p in body["pipelines"]] == [SLUG]
    assert [(job, size) for job, size, _, _ in antenna.claims][:2] == [(7, 8), (7, 8)]
    assert all(info == {"pid": 1} for _, _, info, _ in antenna.claims)

    answers = antenna.jobs[7].answers
    assert sorted(answers) == sorted(f"t{i}" for i, _ in [*images, missing])
    assert all(len(a) == 1 for a in answers.values())
    oracle = OnnxClassifier.from_file(resolve("zoo:nl-moths-demo"), "cpu")  # not the worker's
    expected = oracle.predict(moth_images(9))
    for (image_id, url), prediction in zip(images, expected, strict=True):
        result = PipelineResultsResponse.model_validate(answers[f"t{image_id}"][0])
        assert [(s.id, s.url) for s in result.source_images] == [(image_id, url)]
        assert result.pipeline == SLUG
        assert result.detections[0].source_image_id == image_id
        assert _species(result) == prediction.top1("species")[0]
        assert _named_algorithms(result) <= _registered(antenna.registrations[0][1])
    error = PipelineResultsError.model_validate(answers["t999"][0])
    assert error.image_id == "999" and error.error
    assert worker.counts.tasks == 10 and worker.counts.failed == 1


def test_a_task_delivered_twice_is_answered_twice_and_fetched_once_per_batch(antenna, host, model):
    images = _host_images(host, "twice", 4)
    antenna.add_job(8, SLUG, images, twice_in_batch={"t100"}, again_after={"t101"})
    worker = run_worker(antenna, [model], register=False)

    assert antenna.refused == [] and antenna.registrations == []
    answers = antenna.jobs[8].answers
    assert {task: len(a) for task, a in answers.items()} == {
        "t100": 2, "t101": 2, "t102": 1, "t103": 1
    }  # fmt: skip
    assert sum(path == "/twice/0.jpg" for path, _ in host.requests) == 1  # one batch, one fetch
    assert sum(path == "/twice/1.jpg" for path, _ in host.requests) == 2  # a later batch
    for task in ("t100", "t101"):
        first, second = (PipelineResultsResponse.model_validate(a) for a in answers[task])
        assert first.source_images == second.source_images
        assert _species(first) == _species(second)
        assert first.detections[0].classifications[0].scores == (
            second.detections[0].classifications[0].scores
        )
    assert worker.counts.again == 2  # the second delivery of each


def test_503s_and_dropped_connections_are_tried_again(antenna, host, model):
    images = _host_images(host, "faults", 10)
    antenna.add_job(9, SLUG, images)
    antenna.faults.update(
        projects=[503, "drop"],
        register=["drop", 503],
        jobs=[503, "drop", 503],
        tasks=["drop", 503],
        result=[503, "drop", "drop-after"],  # the last: handled, then the answer is lost
    )
    worker = run_worker(antenna, [model], batch_size=4)

    assert antenna.refused == []
    assert not any(antenna.faults.values())  # every fault was met
    assert worker.client.retries == 12
    assert [p for p, _ in antenna.registrations] == [1, 2]
    assert {task for task in antenna.jobs[9].answers} == {f"t{i}" for i, _ in images}
    assert antenna.answered == 10


def test_images_are_fetched_concurrently_and_a_slow_one_fails_alone(antenna, host, model):
    images = _host_images(host, "slow", 8, delay=0.5)
    stuck = ("555", host.add("/slow/stuck.jpg", moth_images(1)[0].read_bytes(), delay=4.0))
    antenna.add_job(10, SLUG, [*images, stuck])
    started = time.monotonic()
    run_worker(antenna, [model], batch_size=16, options=ServeOptions(fetch_timeout=1.0))
    elapsed = time.monotonic() - started

    assert elapsed < 3.5  # one after another: 8 x 0.5 s + 1 s
    answers = antenna.jobs[10].answers
    error = PipelineResultsError.model_validate(answers["t555"][0])
    assert error.image_id == "555"
    for image_id, _ in images:
        assert PipelineResultsResponse.model_validate(answers[f"t{image_id}"][0]).detections


def test_a_pipeline_file_runs_its_detector_filter_and_classifier(antenna, host, tmp_path):
    from helpers.image_samples import encode
    from helpers.onnx_detectors import GRID, grid_detector, paint_cells, sheet
    from helpers.pipeline_models import BRIGHT_SPECIES, LEAF, brightness_classifier, leaf_filter
    from helpers.pipeline_models import pipeline_file as write_pipeline
    from PIL import Image

    from moths_framework.serve.served import load_served_pipeline

    width, height = 640, 480
    cell = (width // GRID[0], height // GRID[1])
    pixels = paint_cells(sheet(width, height), [(2, 1), (10, 6)])  # two moths: grey cells
    pixels[3 * cell[1] : 4 * cell[1], 15 * cell[0] : 16 * cell[0]] = LEAF  # and a leaf
    frame = host.add("/pipeline/frame.png", encode(Image.fromarray(pixels), "PNG"))
    path = write_pipeline(
        tmp_path / "grid-moths.yaml",
        brightness_classifier(tmp_path / "bright.onnx"),
        grid_detector(tmp_path / "grid.onnx"),
        leaf_filter(tmp_path / "leaf.onnx"),
    )
    antenna.add_job(11, "grid-moths", [("1", frame)])
    run_worker(antenna, [load_served_pipeline(path, providers="cpu")])

    (_, body), _ = antenna.registrations
    result = PipelineResultsResponse.model_validate(antenna.jobs[11].answers["t1"][0])
    assert {"grid-moths-detector", "grid-moths-filter"} <= _named_algorithms(result)
    assert _named_algorithms(result) <= _registered(body)
    assert len(result.detections) == 3
    assert {d.algorithm.key for d in result.detections} == {"grid-moths-detector"}
    firsts = sorted(d.classifications[0].classification for d in result.detections)
    assert firsts == ["moth", "moth", "nonmoth"]  # the filter's, first
    moths = [d for d in result.detections if d.classifications[0].classification == "moth"]
    for moth in moths:
        (terminal,) = [c for c in moth.classifications if c.terminal]
        assert terminal.classification == BRIGHT_SPECIES
