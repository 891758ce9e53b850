"""The benchmark scripts in bench/: what they time and how they label the result.

The scripts are not timed here; their timed parts are replaced by recorders so
the order of the contenders and the wording of the result line are checked.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` as ``bench_<name>`` (the scripts import ``photos`` flat)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_alternates_first_side_and_labels_the_rerun_ratio(monkeypatch, tmp_path, capsys):
    prepare = load_bench("prepare")
    calls: list[str] = []
    times = {"baseline": 6.0, "first": 2.0, "rerun": 0.5}

    def baseline(files, workers):
        calls.append("baseline")
        return times["baseline"], {"broken.jpg"}

    def timed_prepare(out, sources, workers):
        kind = "rerun" if out in seen else "first"
        seen.add(out)
        calls.append(kind)
        return times[kind], SimpleNamespace(decoded=0)

    seen: set[Path] = set()
    monkeypatch.setattr(prepare, "make_corpus", lambda root, *a: {"broken.jpg"})
    monkeypatch.setattr(prepare, "run_baseline", baseline)
    monkeypatch.setattr(prepare, "timed_prepare", timed_prepare)
    monkeypatch.setattr(prepare, "broken_rejects", lambda out: {"broken.jpg"})
    monkeypatch.setattr(sys, "argv", ["prepare.py", "--dir", str(tmp_path), "--repeat", "3"])
    prepare.main()
    assert calls == ["baseline", "first", "rerun"] + ["first", "rerun", "baseline"] + [
        "baseline", "first", "rerun"
    ]  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "prepare: first run 3.00x faster than baseline, "
        "re-run 4.00x faster than its first run, same rejects: yes"
    )


@pytest.mark.parametrize(("same", "word"), [(True, "yes"), (False, "no")])
def test_prepare_result_line(same: bool, word: str) -> None:
    line = load_bench("prepare").result_line(2.5, 100.0, same)
    assert line == (
        "prepare: first run 2.50x faster than baseline, "
        f"re-run 100.00x faster than its first run, same rejects: {word}"
    )
