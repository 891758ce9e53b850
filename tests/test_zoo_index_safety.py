"""A zoo index is data, never a path: schema-checked, hashes only as hex digests, no plain http.

Every index (local or fetched) is validated against the packaged JSON Schema;
the cache builds no path or glob from index text that is not a sha256 digest;
an index or file over plain ``http://`` needs ``--allow-insecure-http`` (or
``MOTHS_ZOO_INSECURE=1``); a zoo checkpoint is safetensors, never a pickle.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.zoo_server import serve

from moths_framework import zoo
from moths_framework.cli import infer as infer_cli
from moths_framework.cli import zoo as zoo_cli
from moths_framework.zoo.cache import cached_path, fetch_file, verify_cache
from moths_framework.zoo.index import ZooIndex

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
DEMO = "nl-moths-demo"
HOSTILE = "../../../x/*"  # from <cache>/zoo/tmp/ that is <tmp_path>/x/*
IMAGE = REPO / "test_data" / "source_a" / "Aglais io" / "1.jpg"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    for name in ("MOTHS_OFFLINE", "MOTHS_ZOO_INDEX", "MOTHS_ZOO_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder outside the cache that a hostile index aims at."""
    folder = tmp_path / "x" / "keep-me"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("mine")
    return folder


def _index(folder: Path, edit: Callable[[dict], object] = lambda data: None) -> Path:
    """A copy of the repository's zoo in ``folder``, its index changed by ``edit``."""
    shutil.copytree(ZOO / DEMO, folder / DEMO)
    data = json.loads((ZOO / "index.json").read_text())
    edit(data)
    (folder / "index.json").write_text(json.dumps(data))
    return folder / "index.json"


def _untouched(victim: Path) -> None:
    assert (victim / "data.txt").read_text() == "mine"
    assert [p.name for p in victim.parent.iterdir()] == ["keep-me"]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err


def test_a_hostile_sha256_is_refused_and_nothing_outside_the_cache_is_touched(
    tmp_path, victim, capsys
):
    index = _index(tmp_path / "evil", lambda d: d["models"][0]["files"][0].update(sha256=HOSTILE))
    pull = ["pull", DEMO, "--no-progress"]
    for command in (pull, pull, ["verify", DEMO], ["show", DEMO]):  # a 2nd pull used to rmtree
        assert zoo_cli.main(["--index", str(index), *command]) == 2
        err = _one_line(capsys.readouterr().err)
        assert f"zoo index {index}: $.models[0].files[0].sha256: " in err
    _untouched(victim)


def test_the_cache_builds_no_path_from_a_hash_that_is_not_hex(tmp_path, victim):
    """Defence in depth: an index that skipped validation still cannot aim outside the cache."""
    index = _index(tmp_path / "evil", lambda d: d["models"][0]["files"][0].update(sha256=HOSTILE))
    data = json.loads(index.read_text())
    entry = ZooIndex(str(index), data).entries[0]  # built directly: not validated
    bad = entry.files[0]
    assert bad.sha256 == HOSTILE
    calls = (lambda: cached_path(bad), lambda: verify_cache([bad]), lambda: fetch_file(entry, bad))
    for call in calls:
        with pytest.raises(zoo.ZooError, match="not a sha256 digest"):
            call()
    _untouched(victim)


def test_validate_index_is_one_line_naming_the_index_and_the_field():
    data = json.loads((ZOO / "index.json").read_text())
    zoo.validate_index(data, "demo")  # the repository's own index is valid
    data["models"][0]["files"][1]["role"] = "weights"
    with pytest.raises(zoo.ZooError) as err:
        zoo.validate_index(data, "some/index.json")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("zoo index some/index.json: $.models[0].files[1].role: ")


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d["models"][0].update(id="../up"), "$.models[0].id"),
        (lambda d: d["models"][0]["files"][0].update(size="big"), "$.models[0].files[0].size"),
        (lambda d: d["models"][0]["files"][0].update(path="/etc"), "$.models[0].files[0]"),
        (lambda d: d["models"][0]["files"][0].update(url="ftp://x/m"), "$.models[0].files[0].url"),
        (lambda d: d.update(models={}), "$.models"),
    ],
)
def test_an_index_not_matching_the_schema_is_refused_in_one_line(tmp_path, capsys, edit, where):
    index = _index(tmp_path / "bad", edit)
    assert zoo_cli.main(["--index", str(index), "list"]) == 2
    assert f"zoo index {index}: {where}: " in _one_line(capsys.readouterr().err)


def test_a_fetched_index_is_validated_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTHS_ZOO_INSECURE", "1")  # the test server is plain http
    _index(tmp_path / "served", lambda d: d["models"][0]["files"][0].update(sha256=HOSTILE))
    with serve(tmp_path / "served") as (base, _):
        assert zoo_cli.main(["--index", f"{base}/index.json", "pull", DEMO]) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"zoo index {base}/index.json: $.models[0].files[0].sha256: " in err


def test_the_schema_ships_inside_the_package():
    from importlib.resources import files

    schema = json.loads((files("moths_framework.zoo") / "index.schema.json").read_text())
    file = schema["$defs"]["file"]["properties"]
    assert file["sha256"]["pattern"] == "^[0-9a-f]{64}$"


def test_a_plain_http_index_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    _index(tmp_path / "served")
    with serve(tmp_path / "served") as (base, log):
        url = f"{base}/index.json"
        assert zoo_cli.main(["--index", url, "list"]) == 2
        err = _one_line(capsys.readouterr().err)
        assert f"{url} is plain http://" in err and "--allow-insecure-http" in err
        assert log == []  # refused before any request
        assert zoo_cli.main(["--allow-insecure-http", "--index", url, "list"]) == 0
        assert zoo_cli.main(["list", "--index", url, "--allow-insecure-http"]) == 0
        monkeypatch.setenv("MOTHS_ZOO_INSECURE", "1")
        assert zoo_cli.main(["--index", url, "list"]) == 0


def test_a_plain_http_file_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    root = tmp_path / "served"
    shutil.copytree(ZOO / DEMO, root / DEMO)
    with serve(root) as (base, log):

        def to_http(data: dict) -> None:
            for f in data["models"][0]["files"]:
                f["url"] = f"{base}/{f['url']}"

        index = _index(tmp_path / "local", to_http)  # a local index naming http:// files
        with pytest.raises(zoo.ZooError, match=r"is plain http://.*--allow-insecure-http"):
            zoo.resolve(f"zoo:{DEMO}", indexes=[str(index)])
        monkeypatch.setenv("MOTHS_ZOO_INDEX", str(index))
        out = tmp_path / "p.csv"
        args = ["--model", f"zoo:{DEMO}", str(IMAGE), "--output", str(out), "--no-progress"]
        assert infer_cli.main(args) == 2
        assert "--allow-insecure-http" in _one_line(capsys.readouterr().err)
        assert log == []
        with zoo.allowing_insecure_http():
            assert zoo.resolve(f"zoo:{DEMO}", indexes=[str(index)]).is_file()
    # Cached now, and still refused; allowed, the cached (verified) file is used.
    assert zoo_cli.main(["--index", str(index), "pull", DEMO, "--no-progress"]) == 2
    assert infer_cli.main([*args, "--allow-insecure-http"]) == 0
    assert out.is_file()


def test_a_zoo_checkpoint_must_be_safetensors(tmp_path, monkeypatch):
    from moths_framework.model.warm_start import WarmStartError, load_source

    def to_ckpt(data: dict) -> None:
        data["models"][0]["files"][1]["url"] = f"{DEMO}/1.0.0/model.ckpt"

    index = _index(tmp_path / "zoo", to_ckpt)
    folder = index.parent / DEMO / "1.0.0"
    (folder / "model.safetensors").rename(folder / "model.ckpt")  # same bytes, same sha256
    with pytest.raises(zoo.ZooError, match=r"model\.ckpt.*not \.safetensors"):
        zoo.resolve(f"zoo:{DEMO}", role="checkpoint", indexes=[str(index)])
    monkeypatch.setenv("MOTHS_ZOO_INDEX", str(index))
    with pytest.raises(WarmStartError, match=r"model\.ckpt.*not \.safetensors"):
        load_source(f"zoo:{DEMO}")
