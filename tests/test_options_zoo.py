"""moths-zoo add's --title, --description, --intended-use and --created, each by where it
lands: the index entry (exactly as given) and the model card."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from helpers.paths import REPO

from moths_framework.cli import zoo as zoo_cli

DEMO = REPO / "zoo" / "nl-moths-demo" / "1.0.0" / "model.onnx"
CREATED = "2026-03-04T05:06:07+00:00"


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOTHS_OFFLINE", "1")
    monkeypatch.delenv("MOTHS_ZOO_INDEX", raising=False)


def add(index: Path, *args: str) -> tuple[dict, str]:
    """``moths-zoo add`` of the demo model as team-model 1.0: (its entry, its card)."""
    base = ["add", str(DEMO), "--id", "team-model", "--version", "1.0", "--index", str(index)]
    assert zoo_cli.main([*base, *args]) == 0
    (entry,) = json.loads((index / "index.json").read_text(encoding="utf-8"))["models"]
    return entry, (index / "team-model" / "README.md").read_text(encoding="utf-8")


def test_title_description_intended_use_and_created_land_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {
        "title": "Team moths: Flemish light traps",
        "description": "Species of moths at light, from 2024 trap nights; with 'quotes' & ü.",
        "intended_use": "Sorting trap photos before an expert checks them; not for surveys.",
    }
    args = [f"--{key.replace('_', '-')}={value}" for key, value in given.items()]
    entry, card = add(tmp_path / "zoo", *args, "--created", CREATED)
    assert {key: entry[key] for key in given} == given
    assert entry["created"] == CREATED
    lines = card.splitlines()
    assert lines[2] == given["description"]  # under the heading: what the model is
    assert f"- Intended use: {given['intended_use']}" in lines
    assert f"- Created: {CREATED}" in lines
    capsys.readouterr()
    assert zoo_cli.main(["--index", str(tmp_path / "zoo"), "list", "flemish light"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["team-model", "1.0"]


def test_without_them_the_title_is_the_id_the_card_says_not_stated_and_created_is_now(
    tmp_path: Path,
) -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    entry, card = add(tmp_path / "zoo")
    after = datetime.datetime.now(datetime.timezone.utc)
    assert (entry["title"], entry["description"], entry["intended_use"]) == ("team-model", "", "")
    assert "- Intended use: not stated" in card.splitlines()
    assert before <= datetime.datetime.fromisoformat(entry["created"]) <= after
    assert f"- Created: {entry['created']}" in card.splitlines()


def test_a_title_without_a_description_heads_the_card(tmp_path: Path) -> None:
    _, card = add(tmp_path / "zoo", "--title", "Team moths")
    assert card.splitlines()[2] == "Team moths"


@pytest.mark.parametrize(
    "created", ["yesterday", "2026-03-04", "2026-03-04T05:06:07", "2026-02-31T00:00:00Z"]
)
def test_a_created_that_is_not_a_date_time_with_a_zone_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], created: str
) -> None:
    """The index schema says date-time (RFC 3339): an entry that is not one is refused
    before anything is written."""
    args = ["add", str(DEMO), "--id", "team-model", "--version", "1.0",
            "--index", str(tmp_path / "zoo"), "--created", created]  # fmt: skip
    assert zoo_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-zoo: ") and "\n" not in err
    assert f"created {created!r} is not a date-time" in err and "2026-01-01T00:00:00+00:00" in err
    assert not (tmp_path / "zoo" / "index.json").exists()
    assert not (tmp_path / "zoo" / "team-model").exists()
