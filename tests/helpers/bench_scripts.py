"""The benchmark scripts in bench/, imported as modules so tests can drive their parts."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from helpers.paths import REPO

BENCH = REPO / "bench"


def load_bench(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` as ``bench_<name>`` (the scripts import ``photos`` flat)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
