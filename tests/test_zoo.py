"""The zoo index, the verified content-addressed cache and ``zoo:`` resolution.

A real HTTP server in a thread serves a copy of the repository's own zoo.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pooch
import pytest
from helpers.zoo_server import serve

from moths_framework import zoo
from moths_framework.zoo.cache import verify_cache
from moths_framework.zoo.schema import index_schema

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
DEMO = "nl-moths-demo"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MOTHS_OFFLINE", raising=False)
    monkeypatch.delenv("MOTHS_ZOO_INDEX", raising=False)
    return tmp_path / "cache"


def _blobs(cache: Path) -> list[Path]:
    root = cache / "zoo" / "blobs"
    return sorted(root.iterdir()) if root.is_dir() else []


def _leftovers(cache: Path) -> list[Path]:
    root = cache / "zoo" / "tmp"
    return sorted(root.rglob("*")) if root.is_dir() else []


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The repo's zoo served over HTTP, with an index whose urls are http:// URLs."""
    monkeypatch.setenv("MOTHS_ZOO_INSECURE", "1")  # the test server speaks plain http
    root = tmp_path / "served"
    shutil.copytree(ZOO / DEMO, root / DEMO)
    with serve(root) as (base, log):
        index = json.loads((ZOO / "index.json").read_text())
        for entry in index["models"]:
            for f in entry["files"]:
                f["url"] = f"{base}/{f['url']}"
        (root / "index.json").write_text(json.dumps(index))
        yield base, root, log


def test_the_repository_index_validates_against_its_json_schema():
    schema = index_schema()
    index = json.loads((ZOO / "index.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        index
    )
    broken = json.loads(json.dumps(index))
    broken["models"][0]["files"][0]["sha256"] = "abc"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_demo_files_are_committed_small_and_match_the_index():
    entry = zoo.find(DEMO, [str(ZOO)])
    assert {f.role for f in entry.files} == {"onnx", "checkpoint"}
    for f in entry.files:
        path = Path(entry.source_of(f))
        assert path.stat().st_size == f.size < 3_000_000
        assert pooch.file_hash(str(path)) == f.sha256


def test_pull_over_http_verifies_and_caches_by_content(served, cache):
    base, root, log = served
    paths = zoo.pull(DEMO, [f"{base}/index.json"])
    entry = zoo.find(DEMO, [f"{base}/index.json"])
    assert set(paths) == {"onnx", "checkpoint"}
    for f in entry.files:
        assert paths[f.role].name.startswith(f.sha256)
        assert pooch.file_hash(str(paths[f.role])) == f.sha256
    assert sum(p.startswith(f"/{DEMO}/") for p in log) == 2
    assert [c.ok for c in verify_cache()] == [True, True]
    assert not _leftovers(cache)


def test_a_cache_hit_needs_no_network(served, monkeypatch):
    base, root, log = served
    first = zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"])
    downloads = len(log)
    shutil.rmtree(root / DEMO)  # the server no longer has the files
    monkeypatch.setenv("MOTHS_OFFLINE", "1")  # and the index comes from the cache too
    assert zoo.resolve(f"zoo:{DEMO}@1.0.0", indexes=[f"{base}/index.json"]) == first
    assert len(log) == downloads


def test_offline_without_a_cached_copy_says_what_to_do(served, monkeypatch):
    base, _, log = served
    zoo.find(DEMO, [f"{base}/index.json"])  # the index is cached, the files are not
    monkeypatch.setenv("MOTHS_OFFLINE", "1")
    with pytest.raises(zoo.ZooOfflineError, match=r"MOTHS_OFFLINE=1.*moths-zoo pull nl-moths-demo"):
        zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"])
    assert not any(p.startswith(f"/{DEMO}/") for p in log)


def test_a_tampered_file_is_a_checksum_error_and_nothing_is_cached(served, cache):
    base, root, _ = served
    onnx = root / DEMO / "1.0.0" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0xFF
    onnx.write_bytes(bytes(data))
    entry = zoo.find(DEMO, [f"{base}/index.json"])
    expected = entry.file("onnx").sha256
    actual = pooch.file_hash(str(onnx))
    with pytest.raises(zoo.ZooChecksumError) as err:
        zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"])
    assert f"expected sha256 {expected}" in str(err.value) and f"got {actual}" in str(err.value)
    assert not _blobs(cache) and not _leftovers(cache)


def test_a_tampered_local_file_is_refused_the_same_way(tmp_path, cache):
    local = tmp_path / "local"
    shutil.copytree(ZOO / DEMO, local / DEMO)
    shutil.copy(ZOO / "index.json", local / "index.json")
    (local / DEMO / "1.0.0" / "model.safetensors").write_bytes(b"not the model")
    with pytest.raises(zoo.ZooChecksumError, match="expected sha256 .* got "):
        zoo.resolve(f"zoo:{DEMO}", role="checkpoint", indexes=[str(local)])
    assert not _blobs(cache) and not _leftovers(cache)


def test_a_download_killed_half_way_leaves_no_partial_file(served, cache):
    base, root, _ = served
    index = json.loads((root / "index.json").read_text())
    for f in index["models"][0]["files"]:
        f["url"] = f["url"].replace(base, f"{base}/halfway")
    (root / "halfway.json").write_text(json.dumps(index))
    with pytest.raises(zoo.ZooError, match=f"cannot download {base}/halfway/.*IncompleteRead"):
        zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/halfway.json"])
    assert not _blobs(cache) and not _leftovers(cache)
    # The next, complete download succeeds.
    assert zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"]).is_file()


def test_leftovers_of_a_killed_process_are_cleaned_and_never_served(served, cache):
    base, _, _ = served
    entry = zoo.find(DEMO, [f"{base}/index.json"])
    sha = entry.file("onnx").sha256
    stale = cache / "zoo" / "tmp" / f"{sha}-killed"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half a model")
    path = zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"])
    assert pooch.file_hash(str(path)) == sha
    assert not stale.exists()


def test_verify_finds_and_removes_a_corrupted_cached_file(served, cache):
    base, _, _ = served
    path = zoo.resolve(f"zoo:{DEMO}", indexes=[f"{base}/index.json"])
    path.write_bytes(b"bit rot")
    checks = verify_cache()
    assert [c.ok for c in checks] == [False]
    assert not path.exists()


def test_unknown_ids_and_versions_list_close_matches():
    with pytest.raises(zoo.ZooError, match="no model 'nl-moth-demo'.*did you mean nl-moths-demo"):
        zoo.find("nl-moth-demo", [str(ZOO)])
    with pytest.raises(
        zoo.ZooError, match=r"no version '1.0'.*versions: 1.0.0.*nl-moths-demo@1.0.0"
    ):
        zoo.find(f"{DEMO}@1.0", [str(ZOO)])


def test_a_local_index_and_a_plain_path_resolve(tmp_path):
    assert zoo.resolve("some/model.onnx") == Path("some/model.onnx")
    path = zoo.resolve(f"zoo:{DEMO}")  # the checkout's own index by default
    assert path.suffix == ".onnx" and path.is_file()


def test_several_indexes_first_one_with_the_id_wins(tmp_path, served):
    base, _, _ = served
    entry = zoo.find(DEMO, [f"{base}/index.json", str(ZOO)])
    assert entry.index.location == f"{base}/index.json"
    assert zoo.find(DEMO, [str(ZOO), f"{base}/index.json"]).index.location == str(
        ZOO / "index.json"
    )
    with pytest.raises(zoo.ZooError, match="zoo index .* not found"):
        zoo.find(DEMO, [str(tmp_path / "nowhere")])


def test_an_index_of_another_schema_is_refused(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"schema": 2, "models": []}))
    with pytest.raises(zoo.ZooError, match="schema 2; this moths-framework reads schema 1"):
        zoo.find(DEMO, [str(tmp_path)])
