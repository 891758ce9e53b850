"""Label hierarchy: both CSV forms, Other bundling, whitespace, errors, JSON, seed semantics."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest

from moths_framework.cli import hierarchy as hierarchy_cli
from moths_framework.hierarchy import (
    OTHER,
    SEED_RANKS,
    CsvHierarchy,
    HierarchyError,
    LabelHierarchy,
)
from moths_framework.inference.prediction import roll_up

SEED_HEADER = '"speciesName";"nederNaam";"group";"family";"genus"'


def seed_csv(path: Path, rows: list[tuple[str, ...]], bom: bool = False) -> Path:
    lines = [SEED_HEADER] + [";".join(f'"{v}"' for v in row) for row in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [
    ("Pammene rhediella", "boomgaardbladroller", "micro", "Tortricidae", "Pammene"),
    ("Pammene aurana", "oranje o", "micro", "Tortricidae", "Pammene"),
    ("Noctua pronuba", "huismoeder", "macro", "Noctuidae", "Noctua"),
    ("Aglais io", "dagpauwoog", "rhop", "Nymphalidae", "Aglais"),
]


def test_seed_form_ranks_classes_and_ancestors(tmp_path):
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", ROWS))
    assert h.ranks == ("species", "group", "family", "genus")
    assert h.classes("species") == [
        OTHER,
        "Aglais io",
        "Noctua pronuba",
        "Pammene aurana",
        "Pammene rhediella",
    ]
    assert h.classes("group") == [OTHER, "macro", "micro", "rhop"]
    assert h.ancestors("Noctua pronuba") == {
        "species": "Noctua pronuba",
        "group": "macro",
        "family": "Noctuidae",
        "genus": "Noctua",
    }
    assert h.targets("Pammene aurana") == (3, 2, h.index("family", "Tortricidae"), 3)
    assert h.num_classes() == {"species": 5, "group": 4, "family": 4, "genus": 4}


def test_plain_csv_with_named_rank_columns(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("species,genus,family,order\nA a,A,Fa,Lep\nA b,A,Fa,Lep\nC c,C,Fc,Lep\n")
    h = LabelHierarchy.from_csv(path)
    assert h.ranks == ("species", "genus", "family", "order")
    assert h.classes("genus") == [OTHER, "A", "C"]
    assert h.ancestors("C c")["order"] == "Lep"


def test_a_species_column_alone_is_a_one_rank_hierarchy(tmp_path):
    """A moth / non-moth filter's hierarchy: one rank, its classes ``Other`` and the two."""
    root = Path(__file__).resolve().parent.parent
    counts = {"moth": 80, "nonmoth": 80}
    h = LabelHierarchy.from_csv(root / "test_data" / "filter" / "hierarchy.csv", counts, 5)
    assert h.ranks == ("species",)
    assert h.classes("species") == [OTHER, "moth", "nonmoth"]
    assert h.targets("nonmoth") == (2,)
    assert h.ancestors("moth") == {"species": "moth"}
    assert h.nesting_conflicts() == {} and h.unknown() == {}
    assert h.ranks_by_specificity() == ("species",)
    assert LabelHierarchy.from_json(h.to_json()) == h
    path = tmp_path / "one.csv"
    path.write_text("species\nmoth\nnonmoth\n")  # no delimiter in the file at all
    assert CsvHierarchy(path).read().ancestors == {"moth": (), "nonmoth": ()}


def test_bom_and_whitespace_are_tolerated(tmp_path):
    rows = [
        ("Epirrhoe molluginata\t", "grauwe bandspanner ", " macro", "Geometridae ", "Epirrhoe"),
        *ROWS,
    ]
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", rows, bom=True))
    assert "Epirrhoe molluginata" in h.classes("species")
    assert h.ancestors("Epirrhoe molluginata")["family"] == "Geometridae"
    assert "macro" in h.classes("group") and " macro" not in h.classes("group")


def test_rare_and_unknown_species_are_bundled_into_other(tmp_path):
    counts = {"Pammene rhediella": 30, "Pammene aurana": 4, "Aglais io": 12, "Zygaena exulans": 50}
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", ROWS), counts, min_samples=5)
    assert h.classes("species") == [OTHER, "Aglais io", "Pammene rhediella"]
    assert h.bundled == ("Pammene aurana", "Zygaena exulans")
    assert h.targets("Pammene aurana") == (0, 0, 0, 0)
    assert h.targets("Zygaena exulans") == (0, 0, 0, 0)
    # Noctuidae only had a species without images: it is not a class.
    assert h.classes("family") == [OTHER, "Nymphalidae", "Tortricidae"]


def test_json_round_trip_is_exact(tmp_path):
    counts = {"Pammene rhediella": 30, "Pammene aurana": 4, "Aglais io": 12}
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", ROWS), counts, min_samples=5)
    back = LabelHierarchy.from_json(h.to_json())
    assert back == h
    assert back.to_json() == h.to_json()
    assert [back.classes(r) for r in back.ranks] == [h.classes(r) for r in h.ranks]


def test_identical_duplicate_rows_are_fine(tmp_path):
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", [*ROWS, ROWS[0]]))
    assert len(h.classes("species")) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        (
            '"speciesName";"nederNaam";"group";"family"\n"A a";"x";"micro";"F"\n',
            r"f\.csv:1: missing rank column\(s\) genus",
        ),
        (
            SEED_HEADER + '\n"A a";"x";"micro";"F";"A"\n"A a";"x";"micro";"G";"A"\n',
            r"f\.csv:3: species 'A a' is listed again.*line 2",
        ),
        (SEED_HEADER + '\n"A a";"x";"micro";"F"\n', r"f\.csv:2: expected 5 fields, found 4"),
        (SEED_HEADER + '\n"";"x";"micro";"F";"A"\n', r"f\.csv:2: no species name"),
        (SEED_HEADER + '\n"xxx";"x";"micro";"F";"A"\n', r"f\.csv:2: no species name"),
        (SEED_HEADER + '\n"Other";"x";"micro";"F";"A"\n', r"f\.csv:2: species name 'Other'"),
        (SEED_HEADER + '\n"A a";"x";"micro";"other";"A"\n', r"f\.csv:2: family name 'other'"),
        (SEED_HEADER + "\n", "no species rows"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(HierarchyError, match=message):
        CsvHierarchy(path).read()


def test_missing_file_and_everything_bundled_are_clear_errors(tmp_path):
    with pytest.raises(HierarchyError, match="not found"):
        LabelHierarchy.from_csv(tmp_path / "nope.csv")
    path = seed_csv(tmp_path / "f.csv", ROWS)
    with pytest.raises(HierarchyError, match="every species is bundled.*min_samples=100"):
        LabelHierarchy.from_csv(path, {"Aglais io": 12}, min_samples=100)


def seed_reference(rows, counts, min_samples):
    """The seed's semantics written out plainly: classes present in the data and not
    trimmed, Other first, everything sorted."""
    trim = {s for s, n in counts.items() if n < min_samples}
    table = {r[0]: r[2:] for r in rows if r[0] in counts and r[0] not in trim}
    classes = [OTHER, *sorted(table)]
    per_rank = [[OTHER, *sorted({a[i] for a in table.values()})] for i in range(3)]
    return classes, per_rank, table


def test_matches_the_seed_on_a_dataset_sized_example(tmp_path):
    rng = random.Random(7)
    families = [f"Family{i}" for i in range(70)]
    genera = {f"Genus{i}": rng.choice(families) for i in range(1000)}
    rows = []
    for i in range(2700):
        genus = rng.choice(sorted(genera))
        family = genera[genus]
        group = "micro" if int(family[6:]) % 3 else rng.choice(["macro", "rhop"])
        group = {"Family1": "macro"}.get(family, group)
        rows.append((f"{genus} species{i}", f"naam {i}", group, family, genus))
    # groups must be a function of the family for the reference to be a hierarchy
    group_of = {}
    rows = [(s, n, group_of.setdefault(f, g), f, ge) for s, n, g, f, ge in rows]
    counts = {r[0]: rng.choice([0, 1, 3, 10, 50, 400]) for r in rows if rng.random() < 0.9}
    counts.update({f"Unlisted species{i}": 100 for i in range(20)})
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", rows), counts, min_samples=10)
    classes, per_rank, table = seed_reference(rows, counts, 10)
    assert len(classes) > 1000
    assert h.classes("species") == classes
    assert [h.classes(r) for r in ("group", "family", "genus")] == per_rank
    for species in rng.sample(sorted(counts), 300):
        expected = (
            (classes.index(species), *(per_rank[i].index(table[species][i]) for i in range(3)))
            if species in table
            else (0, 0, 0, 0)
        )
        assert h.targets(species) == expected


def _expected_summary(csv_path: Path, data: Path, min_samples: int) -> dict:
    """From the files alone: classes per rank (Other included), images, kept, bundled."""
    images = {
        folder.name: sum(p.suffix.lower() in {".jpg", ".png"} for p in folder.iterdir())
        for folder in data.iterdir()
        if folder.is_dir()
    }
    with open(csv_path, newline="", encoding="utf-8") as file:
        table = {row["speciesName"]: row for row in csv.DictReader(file, delimiter=";")}
    kept = sorted(s for s, n in images.items() if n >= min_samples and s in table)
    classes = {"species": len(kept) + 1}
    classes |= {
        rank: len({table[s][rank] for s in kept}) + 1 for rank in ("group", "family", "genus")
    }
    return {
        "classes": classes,
        "images": (sum(images.values()), sum(images[s] for s in kept)),
        "bundled": sorted(set(images) - set(kept)),
    }


@pytest.mark.parametrize(
    ("min_samples", "bundled"),
    [(5, ["Zygaena exulans"]), (13, ["Noctua pronuba", "Zygaena exulans"])],
)  # Zygaena exulans is not in hierarchy.csv; Noctua pronuba has 10 images, Pammene rhediella 13
def test_moths_hierarchy_command_summarises_against_data(test_data, capsys, min_samples, bundled):
    csv_path, data = test_data / "hierarchy.csv", test_data / "source_b"
    code = hierarchy_cli.main(
        [str(csv_path), "--data", str(data), "--min-samples", str(min_samples)]
    )
    assert code == 0
    out = capsys.readouterr().out
    expected = _expected_summary(csv_path, data, min_samples)
    assert expected["bundled"] == bundled
    printed = {rank: int(n) for rank, n in re.findall(r"^  (\w+) +(\d+)$", out, re.MULTILINE)}
    assert printed == expected["classes"]
    total, kept = expected["images"]
    assert f"images: {total} ({kept} in species classes)" in out.splitlines()
    assert f"bundled into Other: {', '.join(bundled)}" in out.splitlines()
    assert "unknown" not in out  # hierarchy.csv names every rank of every species
    assert hierarchy_cli.main(["/nonexistent.csv"]) == 2
    assert "not found" in capsys.readouterr().err


PLACEHOLDER_ROWS = [
    *ROWS,
    ("Symmoca signatella", "geen Nederlandse naam", "micro", "xxx", "Symmoca"),
    ("Sufetula diminutalis", "", "micro", " XXX ", "Sufetula"),
    ("Plesiomorpha flaviceps", "", "macro", "", "Plesiomorpha"),
    ("Lepidotarphius perornatellus", "", "Unknown", "-", "Lepidotarphius"),
]


def test_placeholder_names_mean_unknown_at_that_rank_only(tmp_path):
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", PLACEHOLDER_ROWS))
    assert h.classes("family") == [OTHER, "Noctuidae", "Nymphalidae", "Tortricidae"]
    assert h.classes("group") == [OTHER, "macro", "micro", "rhop"]
    assert h.ancestors("Symmoca signatella") == {
        "species": "Symmoca signatella",
        "group": "micro",
        "family": OTHER,
        "genus": "Symmoca",
    }
    targets = h.targets("Lepidotarphius perornatellus")
    assert targets[1:3] == (0, 0) and targets[0] > 0 and targets[3] > 0
    assert h.unknown() == {
        "group": ["Lepidotarphius perornatellus"],
        "family": [
            "Lepidotarphius perornatellus",
            "Plesiomorpha flaviceps",
            "Sufetula diminutalis",
            "Symmoca signatella",
        ],
    }
    assert LabelHierarchy.from_json(h.to_json()) == h


def test_placeholders_are_configurable(tmp_path):
    rows = [*ROWS, ("Symmoca signatella", "", "micro", "n/a", "Symmoca")]
    rows.append(("Sufetula diminutalis", "", "micro", "xxx", "Sufetula"))
    rows.append(("Plesiomorpha flaviceps", "", "macro", "", "Plesiomorpha"))
    source = CsvHierarchy(seed_csv(tmp_path / "f.csv", rows), placeholders=["N/A"])
    h = source.build()
    assert h.ancestors("Symmoca signatella")["family"] == OTHER
    assert h.ancestors("Sufetula diminutalis")["family"] == "xxx"
    assert h.ancestors("Plesiomorpha flaviceps")["family"] == OTHER  # empty: always unknown
    rows.append(("Aglais urticae", "", "rhop", "other", "Aglais"))
    path = seed_csv(tmp_path / "g.csv", rows)
    assert CsvHierarchy(path, placeholders=["n/a", "other"]).build().unknown()["family"] == [
        "Aglais urticae",
        "Plesiomorpha flaviceps",
        "Symmoca signatella",
    ]
    with pytest.raises(HierarchyError, match=r"g\.csv:9: family name 'other' is reserved"):
        CsvHierarchy(path).read()


def test_a_species_called_other_is_an_error_in_any_table():
    with pytest.raises(HierarchyError, match="may not be called 'Other'"):
        LabelHierarchy(("species", "genus"), {"Other": ("X",), "A a": ("A",)})


def test_names_are_nfc_everywhere(tmp_path):
    nfc, nfd = "Eupithecia ab\u00e9rrans", "Eupithecia abe\u0301rrans"
    family_nfd = "Ge\u0301ometridae"
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", [(nfd, "", "macro", family_nfd, "E")]))
    assert h.classes("species") == [OTHER, nfc]
    assert h.classes("family") == [OTHER, "G\u00e9ometridae"]
    assert h.ancestors(nfd)["species"] == nfc and h.targets(nfd) == h.targets(nfc) == (1, 1, 1, 1)
    counted = LabelHierarchy.from_csv(tmp_path / "f.csv", {nfc: 10}, min_samples=5)
    assert counted.classes("species") == [OTHER, nfc]
    written = h.to_json().replace(nfc, nfd).replace("G\u00e9ometridae", family_nfd)
    assert nfd in written and LabelHierarchy.from_json(written) == h


NON_TREE_ROWS = [
    *ROWS,
    ("Tortrix viridana", "eikenbladroller", "macro", "Tortricidae", "Tortrix"),
    ("Vanessa atalanta", "atalanta", "macro", "Nymphalidae", "Vanessa"),
    ("Symmoca signatella", "", "micro", "xxx", "Symmoca"),
    ("Plesiomorpha flaviceps", "", "macro", "xxx", "Plesiomorpha"),
]


def test_families_under_several_groups_are_found(tmp_path):
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", NON_TREE_ROWS))
    assert h.ranks_by_specificity() == ("species", "genus", "family", "group")
    # The placeholder family sits under two groups too, but it is not a family.
    assert h.nesting_conflicts() == {
        ("family", "group"): {"Nymphalidae": ["macro", "rhop"], "Tortricidae": ["macro", "micro"]}
    }
    assert LabelHierarchy.from_csv(seed_csv(tmp_path / "g.csv", ROWS)).nesting_conflicts() == {}


def test_roll_up_answers_from_independent_heads_in_a_non_tree_hierarchy(tmp_path):
    h = LabelHierarchy.from_csv(seed_csv(tmp_path / "f.csv", NON_TREE_ROWS))
    order = h.ranks_by_specificity()
    thresholds = dict.fromkeys(h.ranks, 0.5)
    # Family Tortricidae and group macro: both true of Tortrix viridana, not a path in a tree.
    top1 = {"species": ("Tortrix viridana", 0.3), "genus": ("Tortrix", 0.4),
            "family": ("Tortricidae", 0.6), "group": ("macro", 0.9)}  # fmt: skip
    assert roll_up(top1, order, thresholds) == ("Tortricidae", "family", 0.6, True)
    top1["family"] = ("Tortricidae", 0.2)
    assert roll_up(top1, order, thresholds) == ("macro", "group", 0.9, True)


def test_moths_hierarchy_reports_unknown_names_and_non_tree_ranks(tmp_path, capsys):
    path = seed_csv(tmp_path / "f.csv", NON_TREE_ROWS)
    assert hierarchy_cli.main([str(path)]) == 0
    captured = capsys.readouterr()
    assert "unknown family (Other there): 2 species: Plesiomorpha flaviceps, Symmoca" in (
        captured.out
    )
    assert captured.err == (
        "moths-hierarchy: warning: family is not nested in group: 2 family name(s) sit under "
        "several: Nymphalidae (macro, rhop), Tortricidae (macro, micro)\n"
    )
    assert hierarchy_cli.main([str(path), "--placeholder", "n/a"]) == 0  # xxx: a real family
    assert "Tortricidae (macro, micro), xxx (macro, micro)" in capsys.readouterr().err


BAD_RANKS = ["../../x", "a/b", "genus.csv", "", "9th", "ge nus", "g" * 65, "C:x", "fam\u00edly"]


@pytest.mark.parametrize("rank", BAD_RANKS)
def test_a_rank_that_is_no_safe_file_name_is_refused_in_every_form(tmp_path, rank):
    # Ranks become file names (moths-evaluate's confusion/<rank>.csv): "../../x" must not.
    rule = r"letter, then up to 63 letters, digits, _ or -"
    plain = tmp_path / "plain.csv"
    plain.write_text(f'species,"{rank}"\nAglais io,Aglais\n', encoding="utf-8")
    named = re.escape(repr(rank))
    with pytest.raises(HierarchyError, match=rf"plain\.csv:1: rank {named}.*{rule}"):
        CsvHierarchy(plain).read()
    with pytest.raises(HierarchyError, match=rf"rank {named}.*{rule}"):
        LabelHierarchy(("species", rank), {"Aglais io": ("Aglais",)})
    good = LabelHierarchy(("species", "genus"), {"Aglais io": ("Aglais",)}).to_json()
    with pytest.raises(HierarchyError, match=rf"rank {named}"):
        LabelHierarchy.from_json(good.replace('"genus"', json.dumps(rank)))


def test_a_model_file_with_a_bad_rank_is_refused_with_one_line():
    from moths_framework.inference.metadata import HIERARCHY_KEY, ModelFormatError, ModelMetadata
    from moths_framework.preprocessing import Preprocessing

    hierarchy = LabelHierarchy(("species", "genus"), {"Aglais io": ("Aglais",)})
    props = ModelMetadata(hierarchy, Preprocessing()).to_props()
    props[HIERARCHY_KEY] = props[HIERARCHY_KEY].replace('"genus"', '"../../genus"')
    with pytest.raises(ModelFormatError, match=r"m\.onnx: .*rank '\.\./\.\./genus'") as error:
        ModelMetadata.from_props(props, "m.onnx")
    assert "\n" not in str(error.value)


def test_the_project_hierarchy_files_keep_their_ranks():
    root = Path(__file__).resolve().parent.parent
    assert CsvHierarchy(root / "test_data" / "hierarchy.csv").read().ranks == SEED_RANKS
    shared = Path("/work/shared/data/family.csv")  # the seed's real file, where present
    if shared.is_file():
        assert CsvHierarchy(shared).read().ranks == SEED_RANKS
    for rank in ("group", "family", "genus", "order", "sub-family", "Tribe_2", "x" * 64):
        assert LabelHierarchy(("species", rank), {"Aglais io": ("Aglais",)}).ranks[1] == rank
