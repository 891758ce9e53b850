"""The core and every plugin as real distributions, built as ``make dist`` builds them and
installed (not editable).

Slow, and needs the network: each project is built as ``make dist`` does,
``python -m build --outdir dist PROJECT`` in isolation (a fresh build
environment with setuptools from PyPI), which writes the sdist and then the
wheel built from that sdist. The sdists are installed with ``--no-deps`` (pip
builds each in isolation again; only setuptools is downloaded) into a fresh
venv whose own site-packages holds only them. Third-party dependencies (torch,
lightning, timm, ...) are not downloaded again: a folder of links to this
venv's packages, with every moths distribution and editable hook left out, is
put on the fresh venv's path, and ``pip check`` proves the declared
requirements (``moths-framework[train]`` ranges included) are met.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())
_OURS = ("moths_framework", "moths_plugin", "__editable__", "_moths", "moths-")
SCHEMA = "moths_framework/zoo/index.schema.json"  # package data every zoo index is checked with

pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _link_third_party(deps: Path) -> None:
    """Links to this venv's installed packages, without any moths distribution."""
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.startswith(_OURS) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """What ``make dist`` writes: an sdist and a wheel of the core and of every plugin."""
    dist = tmp_path_factory.mktemp("dist") / "dist"
    for project in [REPO, *PLUGINS]:
        _run(sys.executable, "-m", "build", "--outdir", str(dist), str(project), cwd=dist.parent)
    return dist


@pytest.fixture(scope="module")
def fresh_venv(dist) -> Path:
    tmp = dist.parent
    sdists = sorted(dist.glob("*.tar.gz"))
    assert len(sdists) == 1 + len(PLUGINS) == len(list(dist.glob("*.whl"))), sorted(dist.iterdir())
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run(*pip, "install", "-q", "--no-deps", *map(str, sdists), cwd=tmp)
    purelib = _run(
        str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp
    )
    _link_third_party(tmp / "deps")
    (Path(purelib.strip()) / "zz_third_party.pth").write_text(str(tmp / "deps") + "\n")
    _run(*pip, "check", cwd=tmp)  # every declared requirement is satisfied
    return venv


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "WANDB_MODE": "disabled"}


def test_the_core_sdist_and_wheel_carry_the_package_data(dist):
    (sdist,) = dist.glob("moths_framework-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert SCHEMA in names, f"{sdist.name} lacks {SCHEMA}"
    assert "pyproject.toml" in names
    (wheel,) = dist.glob("moths_framework-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert SCHEMA in archive.namelist(), f"{wheel.name} (built from the sdist) lacks {SCHEMA}"


def test_the_sdists_install_and_load_from_the_fresh_venv(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    where = _run(
        str(python),
        "-c",
        "import moths_framework as m, moths_plugin_timm as t; print(m.__file__, t.__file__)",
        cwd=tmp_path,
        env=_env(),
    )
    assert all(str(fresh_venv) in path for path in where.split()), where
    rows = json.loads(
        _run(str(fresh_venv / "bin" / "moths-plugins"), "--json", cwd=tmp_path, env=_env())
    )
    by_dist = {(r["distribution"], r["name"]): r for r in rows}
    assert by_dist[("moths-plugin-timm", "timm")]["error"] is None
    assert by_dist[("moths-plugin-torchvision", "torchvision")]["error"] is None
    assert all(r["error"] is None for r in rows), [r for r in rows if r["error"]]


def test_moths_fit_prints_the_dev_config_with_the_installed_plugins(fresh_venv, tmp_path):
    fit = str(fresh_venv / "bin" / "moths-fit")
    out = _run(
        fit, "--config", str(REPO / "configs" / "dev.yaml"), "--print_config", cwd=REPO, env=_env()
    )
    backbone = out[out.index("  backbone:") :].splitlines()[1]
    assert (
        backbone.strip().startswith("class_path: moths_plugin_timm.") and "TimmBackbone" in backbone
    )
    assert "name: resnet10t" in out


def test_the_installed_package_checks_the_zoo_index_with_its_schema(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    where = "import importlib.resources as r; print(r.files('moths_framework.zoo'))"
    package = Path(_run(str(python), "-c", where, cwd=tmp_path, env=_env()).strip())
    assert str(package).startswith(str(fresh_venv)) and (package / "index.schema.json").is_file()
    zoo = ["--index", str(REPO / "zoo"), "list"]
    listed = _run(str(fresh_venv / "bin" / "moths-zoo"), *zoo, cwd=tmp_path, env=_env())
    assert "nl-moths-demo" in listed, listed
