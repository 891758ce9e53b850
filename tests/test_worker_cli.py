"""``moths-worker`` as an operator runs it: one-line errors, the token kept secret,
SIGTERM in the middle of a batch, and one process per ``--devices`` entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.antenna_schemas import PipelineResultsResponse
from helpers.antenna_server import TOKEN, AntennaServer
from helpers.worker_runs import moth_images

from moths_framework.cli.worker import main
from moths_framework.worker.antenna_client import api_root

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
        (["--model", "zoo:nl-moths-demo"], "two models share the pipeline slug nl-moths-demo"),
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


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("https://antenna.example.org", "https://antenna.example.org/api/v2/"),
        ("https://antenna.example.org/", "https://antenna.example.org/api/v2/"),
        ("http://10.0.0.5:8000/api/v2", "http://10.0.0.5:8000/api/v2/"),
        ("https://example.org/antenna/api/v2/", "https://example.org/antenna/api/v2/"),
    ],
)
def test_the_antenna_url_is_its_api_root(given, root):
    assert api_root(given) == root


def test_no_pipeline_is_one_line(token_file, capsys):
    args = ["--antenna", "http://127.0.0.1:9", "--token-file", str(token_file)]
    assert main(args) == 2
    assert "give the pipelines to run" in _error_line(capsys)


@pytest.mark.parametrize(("more", "first"), [([], "projects/"), (["--no-register"], "jobs/")])
def test_a_token_antenna_refuses_is_one_line_and_never_printed(antenna, tmp_path, more, first):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-token-8c1d")
    worker = _Worker(_args(antenna.url, wrong, *more))  # its own process: a regression may hang
    output = worker.output(timeout=60)
    assert worker.process.returncode == 2, output
    assert "not-the-token-8c1d" not in output
    assert output.strip().endswith(
        "error: Antenna refused the token (HTTP 401: Invalid token.); check --token-file and "
        "the service's permissions in the project"
    )
    assert antenna.refused == [(f"/api/v2/{first}", "token")]


_STARTED: list[_Worker] = []


class _Worker:
    """``moths-worker`` in a process of its own, its output read line by line as it comes."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moths_framework.cli.worker", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        _STARTED.append(self)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_for(self, condition, timeout: float = 60) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"not reached; the worker said:\n{self.output()}")
            time.sleep(0.05)

    def output(self, timeout: float = 30) -> str:
        self.process.wait(timeout)
        self.reader.join(5)
        return "\n".join(self.lines)


@pytest.fixture(autouse=True)
def _no_worker_left() -> Iterator[None]:
    yield
    while _STARTED:
        worker = _STARTED.pop()
        if worker.process.poll() is None:  # a test that failed midway
            worker.process.kill()
            worker.process.wait()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # exited, not yet reaped


def test_sigterm_mid_batch_posts_the_batch_in_hand_then_exits(antenna, host, token_file):
    slow = [(str(i), host.add(f"/term/{i}.jpg", p.read_bytes(), delay=1.5))
            for i, p in enumerate(moth_images(12))]  # fmt: skip
    antenna.add_job(4, SLUG, slow)
    worker = _Worker(_args(antenna.url, token_file, "--batch-size", "6"))
    worker.wait_for(lambda: antenna.claims)
    worker.process.send_signal(signal.SIGTERM)  # its six images are still downloading
    output = worker.output()

    assert worker.process.returncode == 0, output
    assert TOKEN not in output
    assert [(job, delivered) for job, _, _, delivered in antenna.claims] == [(4, 6)]
    answers = antenna.jobs[4].answers
    assert sorted(answers, key=lambda t: int(t[1:])) == [f"t{i}" for i in range(6)]
    for answer in answers.values():
        assert PipelineResultsResponse.model_validate(answer[0]).detections
    assert "stopping: finishing and posting the batch in hand" in output
    assert "job 4 (nl-moths-demo): 6 tasks -> 6 results, 0 failed" in output
    assert "stopped: 6 tasks answered in 1 batches" in output


def _two_cpu_workers(antenna: AntennaServer, token_file: Path, batch_size: int) -> _Worker:
    """``--devices cpu,cpu``, once both processes are looking for jobs (none yet)."""
    worker = _Worker(_args(antenna.url, token_file, "--batch-size", str(batch_size),
                           "--devices", "cpu,cpu"))  # fmt: skip
    worker.wait_for(lambda: all(worker.said(f"[{n}/2 cpu]: no tasks for") for n in (1, 2)))
    return worker


def test_devices_run_one_worker_process_each(antenna, host, token_file):
    worker = _two_cpu_workers(antenna, token_file, batch_size=2)
    antenna.add_job(5, SLUG, [(str(i), host.add(f"/devices/{i}.jpg", p.read_bytes(), delay=0.05))
                              for i, p in enumerate(moth_images(40))])  # fmt: skip
    worker.wait_for(antenna.all_done)
    worker.process.send_signal(signal.SIGTERM)
    output = worker.output()

    assert worker.process.returncode == 0, output
    pids = {info["pid"] for _, _, info, delivered in antenna.claims if delivered}
    assert len(pids) == 2 and os.getpid() not in pids, output  # two children did the work
    assert {info["device"] for _, _, info, _ in antenna.claims} == {"cpu"}
    assert len(antenna.registrations) == 1  # registered once, by the first
    assert antenna.answered == 40
    assert output.count("stopped: ") == 2  # each child stopped gracefully


def test_devices_children_stop_when_their_parent_is_killed(antenna, host, token_file):
    worker = _two_cpu_workers(antenna, token_file, batch_size=1)
    antenna.add_job(6, SLUG, [(str(i), host.add(f"/orphans/{i}.jpg", p.read_bytes(), delay=0.2))
                              for i, p in enumerate(moth_images(60))])  # fmt: skip
    pids = lambda: {info["pid"] for _, _, info, n in antenna.claims if n}  # noqa: E731
    worker.wait_for(lambda: len(pids()) == 2)
    worker.process.kill()  # SIGKILL: nothing is forwarded to the children
    worker.process.wait()
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in pids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids())
    assert not antenna.all_done()  # they stopped early, not at the end of the job


def test_the_docs_page_names_every_option():
    from moths_framework.cli.worker import _parser

    page = (Path(__file__).resolve().parents[1] / "docs" / "commands" / "worker.md").read_text()
    options = [o for a in _parser()._actions if a.help != "==SUPPRESS==" for o in a.option_strings
               if o.startswith("--") and o != "--help"]  # fmt: skip
    assert len(options) > 10
    assert [o for o in options if f"`{o}" not in page] == []
