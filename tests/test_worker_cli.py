"""``moths-worker`` as an operator runs it: one-line errors, the token kept secret,
SIGTERM in the middle of a batch, and one process per ``--devices`` entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.antenna_schemas import PipelineResultsResponse
from helpers.antenna_server import TOKEN, AntennaServer
from helpers.worker_runs import moth_images

from moths_framework.cli.worker import main

SLUG = "nl-moths-demo"


@pytest.fixture
def antenna() -> Iterator[AntennaServer]:
    server = AntennaServer(projects=(3,))
    yield server
    server.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(f"{TOKEN}\n")
    return path


def _args(url: str, token_file: Path, *more: str) -> list[str]:
    return ["--antenna", url, "--token-file", str(token_file), "--model", "zoo:nl-moths-demo",
            "--poll-interval", "0.1", *more]  # fmt: skip


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    errors = [line for line in captured.err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and captured.err.strip().endswith(errors[0]), captured.err
    return errors[0]


@pytest.mark.parametrize(
    ("antenna_url", "says"),
    [
        ("ftp://antenna.example.org", "not an http(s) URL"),
        ("antenna.example.org/api/v2", "not an http(s) URL"),
        ("http://", "not an http(s) URL"),
        ("http://antenna.example.org:99999", "not a URL"),
        ("https://antenna.example.org/api/v2?x=1", "without ?query"),
    ],
)
def test_a_bad_antenna_url_is_one_line(token_file, capsys, antenna_url, says):
    assert main(_args(antenna_url, token_file)) == 2
    line = _error_line(capsys)
    assert line.startswith("moths-worker: error: --antenna") and says in line


def test_an_unreadable_or_empty_token_file_is_one_line(tmp_path, capsys):
    assert main(_args("http://127.0.0.1:9", tmp_path / "none.txt")) == 2
    assert "cannot read token file" in _error_line(capsys)
    (tmp_path / "empty.txt").write_text("\n")
    assert main(_args("http://127.0.0.1:9", tmp_path / "empty.txt")) == 2
    assert "is empty" in _error_line(capsys)


@pytest.mark.parametrize(
    ("more", "says"),
    [
        (["--model", "no-such-model.onnx"], "no-such-model.onnx"),
        (["--devices", "gpu0"], "--devices: gpu0 not understood"),
        (["--batch-size", "0"], "--batch-size must be > 0"),
    ],
)
def test_a_bad_model_or_option_is_one_line(token_file, capsys, more, says):
    assert main(_args("http://127.0.0.1:9", token_file, *more)) == 2
    assert says in _error_line(capsys)


def test_a_bad_pipeline_file_is_one_line(token_file, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("classifier: {model: zoo:nl-moths-demo}\ndetektor: zoo:x\n")
    args = ["--antenna", "http://127.0.0.1:9", "--token-file", str(token_file)]
    assert main([*args, "--pipeline", str(bad)]) == 2
    line = _error_line(capsys)
    assert line.startswith("moths-worker: error:") and "bad.yaml" in line and "detektor" in line


def test_no_pipeline_is_one_line(token_file, capsys):
    args = ["--antenna", "http://127.0.0.1:9", "--token-file", str(token_file)]
    assert main(args) == 2
    assert "give the pipelines to run" in _error_line(capsys)


def test_a_token_antenna_refuses_is_one_line_and_never_printed(antenna, tmp_path, capsys):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-token-8c1d")
    assert main(_args(antenna.url, wrong)) == 2
    captured = capsys.readouterr()
    assert "not-the-token-8c1d" not in captured.out + captured.err
    assert "error: Antenna refused the token (HTTP 401: Invalid token.)" in captured.err
    assert antenna.refused == [("/api/v2/projects/", "token")]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moths_framework.cli.worker", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for(condition, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"not reached; worker said:\n{process.communicate()[0]}")
        time.sleep(0.05)


def test_sigterm_mid_batch_posts_the_batch_in_hand_then_exits(antenna, host, token_file):
    slow = [(str(i), host.add(f"/term/{i}.jpg", p.read_bytes(), delay=1.5))
            for i, p in enumerate(moth_images(12))]  # fmt: skip
    antenna.add_job(4, SLUG, slow)
    worker = _start(_args(antenna.url, token_file, "--batch-size", "6"))
    _wait_for(lambda: antenna.claims, 30, worker)
    worker.send_signal(signal.SIGTERM)  # its six images are still downloading
    output, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0, output
    assert TOKEN not in output
    assert [(job, delivered) for job, _, _, delivered in antenna.claims] == [(4, 6)]
    answers = antenna.jobs[4].answers
    assert sorted(answers, key=lambda t: int(t[1:])) == [f"t{i}" for i in range(6)]
    for answer in answers.values():
        assert PipelineResultsResponse.model_validate(answer[0]).detections
    assert "stopping: finishing and posting the batch in hand" in output
    assert "job 4 (nl-moths-demo): 6 tasks -> 6 results, 0 failed" in output
    assert "stopped: 6 tasks answered in 1 batches" in output


def test_devices_run_one_worker_process_each(antenna, host, token_file):
    images = [(str(i), host.add(f"/devices/{i}.jpg", p.read_bytes(), delay=0.05))
              for i, p in enumerate(moth_images(40))]  # fmt: skip
    antenna.add_job(5, SLUG, images)
    worker = _start(_args(antenna.url, token_file, "--batch-size", "2", "--devices", "cpu,cpu"))
    _wait_for(antenna.all_done, 60, worker)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0, output
    pids = {info["pid"] for _, _, info, delivered in antenna.claims if delivered}
    assert len(pids) == 2 and os.getpid() not in pids, output  # two children did the work
    assert {info["device"] for _, _, info, _ in antenna.claims} == {"cpu"}
    assert len(antenna.registrations) == 1  # registered once, by the first
    assert antenna.answered == 40
    assert "moths-worker [1/2 cpu]: " in output and "moths-worker [2/2 cpu]: " in output


def test_the_docs_page_names_every_option():
    from moths_framework.cli.worker import _parser

    page = (Path(__file__).resolve().parents[1] / "docs" / "commands" / "worker.md").read_text()
    options = [o for a in _parser()._actions if a.help != "==SUPPRESS==" for o in a.option_strings
               if o.startswith("--") and o != "--help"]  # fmt: skip
    assert len(options) > 10
    assert [o for o in options if f"`{o}" not in page] == []
