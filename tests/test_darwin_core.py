"""moths-dwc: occurrences.csv to a Darwin Core Archive, read back with python-dwca-reader.

The oracles are independent of the code under test: the Darwin Core occurrence core's
term names are copied from the standard (tests/helpers/darwin_core_terms.py), the counts
were made by hand from the tracks below, and the structure checked is what GBIF's
validator reads (row type, id column, field indexes, eml.xml named as metadata).
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from dwca.read import DwCAReader
from helpers.darwin_core_terms import DWC, OCCURRENCE_CORE
from helpers.paths import REPO

from moths_framework.cli.count import main as count
from moths_framework.cli.dwc import main as dwc
from moths_framework.occurrences.counts import DEPLOYMENT_COLUMNS, OCCURRENCE_COLUMNS
from moths_framework.occurrences.darwin_core import TERMS, _media
from moths_framework.provenance import model_record, write_provenance

NEEDED = {  # what the issue asks every record to carry
    "eventDate", "scientificName", "taxonRank", "individualCount", "basisOfRecord",
    "identifiedBy", "identificationVerificationStatus", "decimalLatitude", "decimalLongitude",
    "associatedMedia", "occurrenceID", "occurrenceStatus", "geodeticDatum", "eventID",
    "locationID", "samplingProtocol",
}  # fmt: skip

HEADER = (
    "path,detection_class,crop,prediction_prob,deployment,night,timestamp,track,"
    "track_prediction,track_prediction_rank,track_prediction_prob"
)
NP, OT = "Noctua pronuba", "Other (not one of the trained species)"
# trap T, night 2024-07-01: T/1 and T/2 Noctua pronuba (2 + 1 rows), T/3 the genus
# Agrotis, T/4 Other; trap U, same night: U/1 Noctua pronuba.
N, T1, T2 = "2024-07-01", "2024-07-01T22:", "2024-07-02T01:"
ROWS = [
    ("t/1.jpg", "moth", "c/1.jpg", 0.7, "T", N, f"{T1}00+02:00", "T/1", NP, "species", 0.8),
    ("t/2.jpg", "moth", "c/2.jpg", 0.9, "T", N, f"{T1}10+02:00", "T/1", NP, "species", 0.8),
    ("t/2.jpg", "moth", "c/3.jpg", 0.6, "T", N, f"{T1}10+02:00", "T/2", NP, "species", 0.6),
    ("t/3.jpg", "moth", "c/4.jpg", 0.5, "T", N, f"{T2}00+02:00", "T/3", "Agrotis", "genus", 0.7),
    ("t/3.jpg", "moth", "c/5.jpg", 0.5, "T", N, f"{T2}00+02:00", "T/4", OT, "species", 0.9),
    ("u/1.jpg", "moth", "c/6.jpg", 0.8, "U", N, f"{T1}50+02:00", "U/1", NP, "species", 0.8),
]
DEPLOYMENTS = "deployment,latitude,longitude,trap_type\nT,52.1,5.2,LepiLED\nU,51.5,-0.12,\n"
DATASET = """title: Test traps
abstract: Two traps, one night.
creators:
  - name: Ada M. Lovelace
    organization: Moth Society
license: CC0-1.0
occurrence_id_prefix: "urn:test:"
media_base_url: https://example.org/m
"""


@pytest.fixture
def counted(tmp_path: Path) -> dict[str, Path]:
    """occurrences.csv made by moths-count from tracks.csv, whose run.json chain names
    a classifier (a fake model file: only its bytes' sha256 matters here)."""
    model = tmp_path / "classifier.onnx"
    model.write_bytes(b"weights of a classifier")
    detections = tmp_path / "detections.csv"
    detections.write_text("path\n", encoding="utf-8")
    write_provenance(detections, "moths-infer", argv=[], models=[model_record("classifier", model)])
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("\n".join([HEADER, *(",".join(map(str, r)) for r in ROWS)]) + "\n")
    write_provenance(tracks, "moths-track", argv=[], inputs=[detections])
    deployments = tmp_path / "deployments.csv"
    deployments.write_text(DEPLOYMENTS, encoding="utf-8")
    dataset = tmp_path / "dataset.yaml"
    dataset.write_text(DATASET, encoding="utf-8")
    occurrences = tmp_path / "occurrences.csv"
    assert count([str(tracks), "--output", str(occurrences)]) == 0
    return {"occurrences": occurrences, "deployments": deployments, "dataset": dataset,
            "model": model}  # fmt: skip


def export(counted: dict[str, Path], output: Path, *extra: str) -> int:
    args = [str(counted["occurrences"]), "--deployments", str(counted["deployments"])]
    return dwc([*args, "--dataset", str(counted["dataset"]), "--output", str(output), *extra])


def rows_of(archive: Path) -> list[dict[str, str]]:
    with DwCAReader(str(archive)) as reader:
        assert reader.descriptor.core.type == DWC + "Occurrence"
        return [{k.rsplit("/", 1)[1]: v for k, v in row.data.items()} for row in reader]


def test_archive_reads_back_with_the_hand_counts(counted, tmp_path, capsys) -> None:
    archive = tmp_path / "archive.zip"
    assert export(counted, archive) == 0
    rows = {(r["locationID"], r["scientificName"]): r for r in rows_of(archive)}
    # by hand: T has 2 Noctua pronuba tracks and 1 Agrotis; U 1 Noctua pronuba; Other left out
    assert {k: int(r["individualCount"]) for k, r in rows.items()} == {
        ("T", NP): 2, ("T", "Agrotis"): 1, ("U", NP): 1,
    }  # fmt: skip
    assert rows[("T", "Agrotis")]["taxonRank"] == "genus"
    noctua = rows[("T", NP)]
    assert noctua["eventDate"] == "2024-07-01T22:00+02:00/2024-07-01T22:10+02:00"
    assert noctua["basisOfRecord"] == "MachineObservation"
    assert noctua["occurrenceStatus"] == "present"
    assert noctua["identificationVerificationStatus"] == "unverified"
    assert (noctua["decimalLatitude"], noctua["decimalLongitude"]) == ("52.1", "5.2")
    assert noctua["geodeticDatum"] == "WGS84"
    assert noctua["associatedMedia"] == "https://example.org/m/c/2.jpg"  # the surest crop
    assert noctua["license"] == "http://creativecommons.org/publicdomain/zero/1.0/legalcode"
    assert noctua["eventID"] == "T/2024-07-01" and noctua["locationID"] == "T"
    assert "LepiLED" in noctua["samplingProtocol"]
    digest = hashlib.sha256(counted["model"].read_bytes()).hexdigest()
    assert digest in noctua["identifiedBy"]
    assert noctua["occurrenceID"] == f"urn:test:T/2024-07-01/Noctua_pronuba/{digest[:12]}"
    assert rows[("U", NP)]["decimalLongitude"] == "-0.12"
    out = capsys.readouterr().out
    assert "3 occurrences (4 individuals) under CC0-1.0; left out 1 individual (1 Other)" in out


def test_every_term_is_in_the_occurrence_core(counted, tmp_path) -> None:
    archive = tmp_path / "archive.zip"
    assert export(counted, archive) == 0
    with DwCAReader(str(archive)) as reader:
        terms = set(reader.descriptor.core.terms)
    assert terms <= OCCURRENCE_CORE, sorted(terms - OCCURRENCE_CORE)
    assert {DWC + t for t in NEEDED} <= terms


def test_structure_is_what_gbif_reads(counted, tmp_path) -> None:
    archive = tmp_path / "archive.zip"
    assert export(counted, archive) == 0
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["eml.xml", "meta.xml", "occurrence.txt", "run.json"]
        meta = ET.fromstring(z.read("meta.xml"))
        eml = ET.fromstring(z.read("eml.xml"))  # well-formed, or this raises
        lines = z.read("occurrence.txt").decode("utf-8").splitlines()
        inside = json.loads(z.read("run.json"))
    text = "{http://rs.tdwg.org/dwc/text/}"
    assert meta.tag == f"{text}archive" and meta.get("metadata") == "eml.xml"
    [core] = meta.findall(f"{text}core")
    assert core.get("rowType") == DWC + "Occurrence"
    assert core.find(f"{text}files/{text}location").text == "occurrence.txt"
    indexes = {int(f.get("index")): f.get("term") for f in core.findall(f"{text}field")}
    assert sorted(indexes) == list(range(len(indexes)))  # every column declared, in order
    id_index = int(core.find(f"{text}id").get("index"))
    assert indexes[id_index] == DWC + "occurrenceID"
    header = lines[0].split("\t")
    assert [indexes[i].rsplit("/", 1)[1] for i in range(len(header))] == header
    assert all(len(line.split("\t")) == len(header) for line in lines[1:])
    ids = [line.split("\t")[id_index] for line in lines[1:]]
    assert len(set(ids)) == len(ids) == 3
    # EML: the dataset's title, creator, license and the methods naming the model
    assert eml.tag == "{https://eml.ecoinformatics.org/eml-2.2.0}eml"
    dataset = eml.find("dataset")
    assert dataset.findtext("title") == "Test traps"
    person = dataset.find("creator/individualName")
    assert (person.findtext("givenName"), person.findtext("surName")) == ("Ada M.", "Lovelace")
    link = dataset.find("intellectualRights/para/ulink")
    assert link.get("url") == "http://creativecommons.org/publicdomain/zero/1.0/legalcode"
    methods = " ".join(p.text for p in dataset.find("methods").iter("para"))
    counted_by = json.loads(Path(f"{counted['occurrences']}.run.json").read_text(encoding="utf-8"))
    assert counted_by["run_id"] in methods  # the chain behind the archive, run by run
    assert hashlib.sha256(counted["model"].read_bytes()).hexdigest() in methods
    sidecar = json.loads((tmp_path / "archive.zip.run.json").read_text(encoding="utf-8"))
    assert sidecar["run_id"] == inside["run_id"]


def test_include_other_keeps_other_as_lepidoptera(counted, tmp_path) -> None:
    archive = tmp_path / "archive.zip"
    assert export(counted, archive, "--include-other") == 0
    [other] = [r for r in rows_of(archive) if r["verbatimIdentification"] == OT]
    assert (other["scientificName"], other["taxonRank"]) == ("Lepidoptera", "order")
    assert other["individualCount"] == "1"


def test_a_folder_archive_and_stable_ids(counted, tmp_path) -> None:
    folder = tmp_path / "dwca"
    assert export(counted, folder) == 0
    assert sorted(p.name for p in folder.iterdir() if p.name != ".moths-output.json") == [
        "eml.xml", "meta.xml", "occurrence.txt", "run.json",
    ]  # fmt: skip
    first = {r["occurrenceID"] for r in rows_of(folder)}
    assert export(counted, folder) == 0  # its own folder: replaced
    assert {r["occurrenceID"] for r in rows_of(folder)} == first


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("license: GPL\n", "license 'GPL' is not one GBIF accepts"),
        ("titel: x\n", "unknown key(s) titel"),
        ("creators:\n  - email: a@b.c\n", "a creator needs a name or an organization"),
    ],
)
def test_bad_dataset_yaml_is_one_line_exit_2(counted, tmp_path, capsys, dataset, message) -> None:
    counted["dataset"].write_text(dataset, encoding="utf-8")
    assert export(counted, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "a.zip").exists()


def test_a_folder_it_did_not_write_is_kept(counted, tmp_path, capsys) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep", encoding="utf-8")
    assert export(counted, folder) == 2
    assert "moths-dwc replaces only its own folders" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_the_page_names_every_term_and_column() -> None:
    text = (REPO / "docs" / "commands" / "darwin-core.md").read_text(encoding="utf-8")
    names = [*TERMS, *OCCURRENCE_COLUMNS, *DEPLOYMENT_COLUMNS]
    assert not [name for name in names if f"`{name}`" not in text]


def test_without_a_run_json_chain_identified_by_is_empty_and_said(counted, tmp_path, capsys):
    Path(f"{counted['occurrences']}.run.json").unlink()
    archive = tmp_path / "archive.zip"
    assert export(counted, archive) == 0
    assert {r["identifiedBy"] for r in rows_of(archive)} == {""}
    assert all(r["occurrenceID"].endswith("/unknown-model") for r in rows_of(archive))
    err = capsys.readouterr().err
    assert "no run.json chain names the classifier: identifiedBy is empty" in err


def test_a_deployment_without_a_place_is_exit_2(counted, tmp_path, capsys) -> None:
    counted["deployments"].write_text("deployment,latitude,longitude\nT,52.1,5.2\n")
    assert export(counted, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert "deployment 'U' of occurrences.csv is not in the deployments table" in err
    assert not (tmp_path / "a.zip").exists()


def test_without_a_dataset_yaml_it_says_what_is_missing(counted, tmp_path, capsys) -> None:
    archive = tmp_path / "a.zip"
    args = [str(counted["occurrences"]), "--deployments", str(counted["deployments"])]
    assert dwc([*args, "--output", str(archive)]) == 0
    assert "no --dataset: a generic title, no creator, CC-BY-4.0" in capsys.readouterr().err
    with zipfile.ZipFile(archive) as z:
        dataset = ET.fromstring(z.read("eml.xml")).find("dataset")
    assert dataset.findtext("title").startswith("Moths at automated light traps, 2024-07-01")
    assert dataset.findtext("creator/organizationName").startswith("unknown")


def test_media_stays_under_the_base_url() -> None:
    base = "https://example.org/m"
    assert _media("crops/a b.jpg", base) == "https://example.org/m/crops/a%20b.jpg"
    assert _media("/abs/x.jpg", base) == "https://example.org/m/abs/x.jpg"
    assert _media("C:\\data\\x.jpg", base) == "https://example.org/m/data/x.jpg"
    assert _media("crops/x.jpg", "") == "crops/x.jpg"


def test_nothing_to_publish_is_exit_1_and_no_archive(counted, tmp_path, capsys) -> None:
    occurrences = counted["occurrences"]
    rows = occurrences.read_text(encoding="utf-8").splitlines()
    others = [rows[0], *(r for r in rows[1:] if ",Other (" in r)]
    occurrences.write_text("\n".join(others) + "\n", encoding="utf-8")
    assert export(counted, tmp_path / "a.zip") == 1
    err = capsys.readouterr().err
    assert "no occurrence to write" in err and "(1 Other; --include-other keeps" in err
    assert not (tmp_path / "a.zip").exists()
    assert export(counted, tmp_path / "a.zip", "--include-other") == 0
