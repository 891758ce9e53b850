"""The CI entry point runs the slow tests whatever the runner's environment says, then the docs,
with a real PostgreSQL it starts and removes (and chromium, both from the distribution)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_ci(
    fake: Path, make: str, parts: tuple[str, ...], **env: str
) -> subprocess.CompletedProcess:
    """.ci/run with ``make`` replaced by the script ``make``, and ``parts`` (programs such as
    chromium or initdb) already installed, so that it installs nothing."""
    fake.mkdir()
    for name, script in [("make", make), *((part, "#!/bin/sh\n") for part in parts)]:
        (fake / name).write_text(script)
        (fake / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MOTHS_TEST_POSTGRES_URL")} | env
    env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run(
        [bash, str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("runner_ci", [None, "", "0"])
def test_ci_run_sets_ci_itself(tmp_path, runner_ci):
    # a database given by the runner: .ci/run starts none
    env = {"MOTHS_TEST_POSTGRES_URL": "postgresql://given/db"}
    if runner_ci is not None:
        env["CI"] = runner_ci
    make = '#!/bin/sh\necho "make $* CI=${CI-unset}"\n'
    done = _run_ci(tmp_path / "bin", make, ("chromium", "initdb"), **env)
    assert done.returncode == 0, done.stderr
    # the README's test command first, with CI set; then the docs site (strict)
    assert done.stdout.split("\n")[:2] == ["make test CI=true", "make docs CI=true"]


def _postgres_installed() -> bool:
    return bool(shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@pytest.mark.needs_real_parts
@pytest.mark.skipif(not _postgres_installed(), reason="no PostgreSQL (initdb) here")
def test_ci_run_gives_the_tests_a_postgresql_and_removes_it(tmp_path):
    check = (
        "import os, psycopg; url = os.environ['MOTHS_TEST_POSTGRES_URL']; print(url); "
        "print(psycopg.connect(url).execute('show data_directory').fetchone()[0])"
    )
    make = f'#!/bin/sh\n[ "$1" = test ] && exec {sys.executable} -c "{check}"\nexit 0\n'
    done = _run_ci(tmp_path / "bin", make, ("chromium",))
    assert done.returncode == 0, done.stdout + done.stderr
    url, data = done.stdout.splitlines()[-2:]
    assert url.startswith("postgresql://moths@127.0.0.1:") and url.endswith("/moths")
    assert f"at {url}" in done.stdout
    # stopped and deleted when .ci/run ends
    assert not Path(data).exists()
    psycopg = pytest.importorskip("psycopg")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
