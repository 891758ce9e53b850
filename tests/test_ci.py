"""The CI entry point runs the slow tests whatever the runner's environment says, then the docs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("runner_ci", [None, "", "0"])
def test_ci_run_sets_ci_itself(tmp_path, runner_ci):
    fake = tmp_path / "bin"
    fake.mkdir()
    make = fake / "make"
    make.write_text('#!/bin/sh\necho "make $* CI=${CI-unset}"\n')
    make.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
    if runner_ci is not None:
        env["CI"] = runner_ci
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(
        [bash, str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, check=True
    )
    # the README's test command first, with CI set; then the docs site (strict)
    assert done.stdout.split("\n")[:2] == ["make test CI=true", "make docs CI=true"]
