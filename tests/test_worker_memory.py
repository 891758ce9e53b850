"""moths-worker stays flat in memory over a long run: bench/worker.py's 10,000 tasks (slow)."""

from __future__ import annotations

import pytest
from helpers.bench_scripts import load_bench


@pytest.mark.slow
def test_worker_memory_is_flat_over_10000_tasks(capsys):
    rss = load_bench("worker").main(["--tasks", "10000"])
    # Anything kept per task shows: keeping each result (about 7 KB) measured +63 MB here.
    assert rss[10_000] - rss[1_000] < 15, capsys.readouterr().out
