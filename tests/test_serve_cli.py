"""moths-serve's command line: usage errors are one line and exit 2, before any server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from moths_framework.cli.serve import main
from moths_framework.serve.served import slug_of


@pytest.mark.parametrize(
    ("source", "slug"),
    [("models/Tiny Moths_v2.onnx", "tiny-moths-v2"), ("zoo:nl-moths@1.2", "nl-moths")],
)
def test_slug_of(source: str, slug: str) -> None:
    assert slug_of(source) == slug


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx not found" in _error(capsys)


def test_unknown_zoo_model(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MOTHS_OFFLINE", "1")
    assert main(["--model", "zoo:no-such-model-anywhere"]) == 2
    assert "zoo" in _error(capsys)  # the zoo says why, in one line


def test_empty_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("\n")
    assert main(["--model", "x.onnx", "--token-file", str(tmp_path / "token")]) == 2
    assert "token file" in _error(capsys)


def test_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "x.onnx", "--max-batch", "0"]) == 2
    assert "--max-batch" in _error(capsys)


def test_limits_reach_uvicorn_and_the_service(
    serve_model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    started = {}

    class Server:  # records what moths-serve would run, runs nothing
        def __init__(self, config: uvicorn.Config) -> None:
            started["config"] = config

        def run(self) -> None:
            started["ran"] = True

    monkeypatch.setattr(uvicorn, "Server", Server)
    args = ["--model", str(serve_model_file), "--limit-concurrency", "7", "--max-json-mb", "0.5",
            "--max-pixels", "1000", "--deny-private-networks",
            "--fetch-per-request", "3"]  # fmt: skip
    assert main(args) == 0 and started["ran"]
    config = started["config"]
    assert config.limit_concurrency == 7
    options = config.app.state.engine.options
    assert (options.max_json_bytes, options.max_pixels) == (2**19, 1000)
    assert options.deny_private_networks and options.fetch_per_request == 3


def test_budgets_must_hold_one_of_the_largest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "x.onnx", "--fetch-budget-mb", "10", "--max-image-mb", "30"]) == 2
    assert "--fetch-budget-mb" in _error(capsys)
