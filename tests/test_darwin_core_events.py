"""moths-dwc --core event: a sampling-event archive, nights without a moth included, read
back with python-dwca-reader; and taxonRank kept to GBIF's rank vocabulary.

The oracles: the Event core's and occurrence core's terms as the standards list them
(tests/helpers/darwin_core_terms.py), the counts and nights stated by hand below, and
the structure GBIF reads (meta.xml's row types, the core's id and the extension's
coreid both the eventID column, eml.xml named as metadata).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from dwca.read import DwCAReader
from helpers.darwin_core_terms import DWC, EVENT_CORE, OCCURRENCE_CORE
from helpers.paths import REPO

from moths_framework.cli.count import main as count
from moths_framework.cli.dwc import main as dwc
from moths_framework.occurrences.events import EVENT_TERMS

HEADER = (
    "path,crop,prediction_prob,deployment,night,timestamp,track,"
    "track_prediction,track_prediction_rank,track_prediction_prob"
)
NP, OT = "Noctua pronuba", "Other (not one of the trained species)"
N, T1 = "2024-07-01", "2024-07-01T22:"
# T, night 2024-07-01: two Noctua pronuba (T/1, T/2), one Noctua at the hierarchy's own
# rank 'group' (T/3), one at 'Genus' (T/4, GBIF's genus); U, night 2024-07-01: one Other.
ROWS = [
    ("t/1.jpg", "c/1.jpg", 0.7, "T", N, f"{T1}00+02:00", "T/1", NP, "species", 0.8),
    ("t/2.jpg", "c/2.jpg", 0.9, "T", N, f"{T1}10+02:00", "T/2", NP, "species", 0.6),
    ("t/2.jpg", "c/3.jpg", 0.6, "T", N, f"{T1}10+02:00", "T/3", "Noctuinae A", "group", 0.7),
    ("t/3.jpg", "c/4.jpg", 0.6, "T", N, f"{T1}20+02:00", "T/4", "Agrotis", "Genus", 0.7),
    ("u/1.jpg", "c/5.jpg", 0.8, "U", N, f"{T1}50+02:00", "U/1", OT, "species", 0.9),
]
# the nights the cameras ran: T on 2024-07-01 (6 hours) and 2024-07-02 (nothing came),
# U on 2024-07-01 (one frame only)
NIGHTS = """deployment,night,frames,first_frame,last_frame
T,2024-07-01,37,2024-07-01T21:30:00+02:00,2024-07-02T03:30:00+02:00
T,2024-07-02,13,2024-07-02T22:00:00+02:00,2024-07-02T23:00:00+02:00
U,2024-07-01,1,2024-07-01T22:50:00+02:00,2024-07-01T22:50:00+02:00
"""
DEPLOYMENTS = "deployment,latitude,longitude,trap_type\nT,52.1,5.2,LepiLED\nU,51.5,-0.12,\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("\n".join([HEADER, *(",".join(map(str, r)) for r in ROWS)]) + "\n")
    (tmp_path / "nights.csv").write_text(NIGHTS, encoding="utf-8")
    (tmp_path / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
    assert count([str(tracks), "--output", str(tmp_path / "occurrences.csv")]) == 0
    return {name: tmp_path / f"{name}.csv" for name in ("occurrences", "nights", "deployments")}


def export(files: dict[str, Path], output: Path, *extra: str) -> int:
    args = [str(files["occurrences"]), "--deployments", str(files["deployments"])]
    return dwc([*args, "--output", str(output), *extra])


def event_archive(files: dict[str, Path], output: Path, *extra: str) -> int:
    return export(files, output, "--core", "event", "--nights", str(files["nights"]), *extra)


def terms_of(row) -> dict[str, str]:
    return {k.rsplit("/", 1)[1]: v for k, v in row.data.items()}


def test_every_night_is_an_event_and_occurrences_hang_from_theirs(files, tmp_path, capsys):
    archive = tmp_path / "events.zip"
    assert event_archive(files, archive) == 0
    with DwCAReader(str(archive)) as reader:
        assert reader.descriptor.core.type == DWC + "Event"
        [extension] = reader.descriptor.extensions
        assert extension.type == DWC + "Occurrence"
        events = {}
        for row in reader:
            occurrences = [terms_of(e) for e in row.extensions]
            events[row.id] = (terms_of(row), {o["scientificName"]: o for o in occurrences})
    # by hand: the deployments T and U as parents, then their three nights
    assert sorted(events) == ["T", "T/2024-07-01", "T/2024-07-02", "U", "U/2024-07-01"]
    night, found = events["T/2024-07-01"]
    assert night["parentEventID"] == "T" and night["locationID"] == "T"
    assert night["eventDate"] == "2024-07-01T21:30:00+02:00/2024-07-02T03:30:00+02:00"
    assert (night["sampleSizeValue"], night["sampleSizeUnit"]) == ("6", "hour")
    assert night["samplingEffort"] == "1 trap-night, 37 frames"
    assert (night["decimalLatitude"], night["decimalLongitude"]) == ("52.1", "5.2")
    assert "LepiLED" in night["samplingProtocol"]
    assert {name: o["individualCount"] for name, o in found.items()} == {
        NP: "2", "Noctuinae A": "1", "Agrotis": "1",
    }  # fmt: skip
    assert all(o["eventID"] == "T/2024-07-01" for o in found.values())
    empty, none = events["T/2024-07-02"]
    assert none == {} and empty["parentEventID"] == "T"  # the trap ran, nothing came
    assert "no occurrence" in empty["eventRemarks"]
    single, other = events["U/2024-07-01"]
    assert other == {}  # its one Other is left out by default
    assert (single["sampleSizeValue"], single["sampleSizeUnit"]) == ("", "")  # one frame
    parent, _ = events["T"]
    assert parent["parentEventID"] == ""
    assert parent["eventDate"] == "2024-07-01T21:30:00+02:00/2024-07-02T23:00:00+02:00"
    assert parent["samplingEffort"] == "2 trap-nights"
    out = capsys.readouterr().out
    assert "3 nights as events (2 without an occurrence), 3 occurrences (4 individuals)" in out


def test_the_terms_are_the_event_core_s_and_the_occurrence_core_s(files, tmp_path) -> None:
    archive = tmp_path / "events.zip"
    assert event_archive(files, archive) == 0
    with DwCAReader(str(archive)) as reader:
        core_terms = set(reader.descriptor.core.terms)
        extension_terms = set(reader.descriptor.extensions[0].terms)
    assert core_terms <= EVENT_CORE, sorted(core_terms - EVENT_CORE)
    assert extension_terms <= OCCURRENCE_CORE, sorted(extension_terms - OCCURRENCE_CORE)
    needed = {"eventID", "parentEventID", "eventDate", "samplingProtocol", "sampleSizeValue",
              "sampleSizeUnit", "samplingEffort", "decimalLatitude", "decimalLongitude",
              "locationID", "countryCode"}  # fmt: skip
    assert {DWC + t for t in needed} <= core_terms


def test_meta_xml_links_the_extension_to_the_core_by_event_id(files, tmp_path) -> None:
    archive = tmp_path / "events.zip"
    assert event_archive(files, archive, "--include-other") == 0
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        meta = ET.fromstring(z.read("meta.xml"))
        eml = ET.fromstring(z.read("eml.xml"))  # well-formed, or this raises
        events = z.read("event.txt").decode("utf-8").splitlines()
        occurrences = z.read("occurrence.txt").decode("utf-8").splitlines()
    assert names == ["eml.xml", "event.txt", "meta.xml", "occurrence.txt", "run.json"]
    text = "{http://rs.tdwg.org/dwc/text/}"
    assert meta.get("metadata") == "eml.xml"
    [core] = meta.findall(f"{text}core")
    [extension] = meta.findall(f"{text}extension")
    assert core.get("rowType") == DWC + "Event"
    assert extension.get("rowType") == DWC + "Occurrence"
    assert core.find(f"{text}files/{text}location").text == "event.txt"
    assert extension.find(f"{text}files/{text}location").text == "occurrence.txt"
    for element, lines, id_tag in ((core, events, "id"), (extension, occurrences, "coreid")):
        fields = {int(f.get("index")): f.get("term") for f in element.findall(f"{text}field")}
        header = lines[0].split("\t")
        assert [fields[i].rsplit("/", 1)[1] for i in range(len(header))] == header
        assert fields[int(element.find(f"{text}{id_tag}").get("index"))] == DWC + "eventID"
        assert all(len(line.split("\t")) == len(header) for line in lines[1:])
    event_ids = [line.split("\t")[0] for line in events[1:]]
    assert len(set(event_ids)) == len(event_ids) == 5
    linked = {line.split("\t")[0] for line in occurrences[1:]}
    assert linked == {"T/2024-07-01", "U/2024-07-01"}  # U's Other kept with --include-other
    # the EML spans every night sampled, the empty one too
    dates = eml.find("dataset/coverage/temporalCoverage/rangeOfDates")
    assert dates.findtext("beginDate/calendarDate") == "2024-07-01"
    assert dates.findtext("endDate/calendarDate") == "2024-07-02"
    methods = " ".join(p.text for p in eml.find("dataset/methods").iter("para"))
    assert "3 nights sampled, 1 without an occurrence" in methods


def test_only_empty_nights_still_make_an_archive(files, tmp_path) -> None:
    rows = files["occurrences"].read_text(encoding="utf-8").splitlines()
    files["occurrences"].write_text("\n".join([rows[0], *(r for r in rows if ",U," in r)]) + "\n")
    assert export(files, tmp_path / "occurrences.zip") == 1  # occurrence core: nothing
    archive = tmp_path / "events.zip"
    assert event_archive(files, archive) == 0  # event core: three nights, no occurrence
    with DwCAReader(str(archive)) as reader:
        assert sorted(row.id for row in reader) == [
            "T", "T/2024-07-01", "T/2024-07-02", "U", "U/2024-07-01",
        ]  # fmt: skip
        assert all(not row.extensions for row in reader)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--core", "event"], "--core event needs --nights nights.csv"),
        (["--nights", "NIGHTS"], "--nights makes the events of --core event"),
    ],
)
def test_core_and_nights_go_together(files, tmp_path, capsys, extra, message) -> None:
    extra = [str(files["nights"]) if e == "NIGHTS" else e for e in extra]
    assert export(files, tmp_path / "a.zip", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "a.zip").exists()


def test_a_night_with_occurrences_missing_from_nights_csv_is_exit_2(files, tmp_path, capsys):
    files["nights"].write_text("\n".join(NIGHTS.splitlines()[:3]) + "\n", encoding="utf-8")
    assert event_archive(files, tmp_path / "a.zip") == 2
    err = capsys.readouterr().err
    assert "night 2024-07-01 of 'U' has occurrences but is not in nights.csv" in err


def test_a_rank_outside_gbif_s_vocabulary_is_kept_verbatim(files, tmp_path) -> None:
    archive = tmp_path / "a.zip"
    assert export(files, archive) == 0
    with DwCAReader(str(archive)) as reader:
        rows = {terms_of(r)["scientificName"]: terms_of(r) for r in reader}
    ranks = {name: (r["taxonRank"], r["verbatimTaxonRank"]) for name, r in rows.items()}
    assert ranks == {
        NP: ("species", "species"),
        "Noctuinae A": ("", "group"),  # the hierarchy's own rank: not a Darwin Core one
        "Agrotis": ("genus", "Genus"),
    }
    with zipfile.ZipFile(archive) as z:
        eml = ET.fromstring(z.read("eml.xml"))
    coverage = {
        c.findtext("taxonRankValue"): c.findtext("taxonRankName")
        for c in eml.iter("taxonomicClassification")
    }
    assert coverage == {NP: "species", "Noctuinae A": None, "Agrotis": "genus"}


def test_the_page_names_every_event_term() -> None:
    text = (REPO / "docs" / "commands" / "darwin-core.md").read_text(encoding="utf-8")
    assert not [term for term in EVENT_TERMS if f"`{term}`" not in text]
