"""moths-prepare: validation, dedupe, conflicts, incremental re-runs, and the CLI."""

from __future__ import annotations

import csv
import hashlib
import os
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from helpers.image_samples import BROKEN, VALID, jpeg

from moths_framework.cli.prepare import main
from moths_framework.data.file_checks import _pool_context
from moths_framework.data.prepare import CACHE, PrepareSummary, prepare_sources

SPECIES = "Aglais io"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def prepare(out: Path, *sources: Path, workers: int = 2) -> PrepareSummary:
    return prepare_sources(out, list(sources), workers=workers, progress=False)


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def rejected(out: Path) -> dict[str, str]:
    with open(out / "rejected.csv", newline="", encoding="utf-8") as file:
        return {row["source"]: row["reason"] for row in csv.DictReader(file)}


def links(out: Path) -> dict[str, str]:
    """Link path relative to OUT -> target, for every entry of the image folder."""
    folder = out / "image_folder"
    return {
        path.relative_to(out).as_posix(): os.readlink(path)
        for path in folder.rglob("*")
        if path.is_symlink() or path.is_file()
    }


def link_of(out: Path, source: Path) -> str:
    return next(row["path"] for row in manifest(out) if row["source"] == str(source))


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    """Two sources, three species, 7 distinct valid JPEGs (Aglais io: 2 + 2)."""
    a, b = tmp_path / "source_a", tmp_path / "source_b"
    for i, (root, species) in enumerate([(a, SPECIES), (a, "Noctua pronuba"), (b, SPECIES)]):
        for j in range(2):
            write(root / species / f"{j + 1}.jpg", jpeg(seed=100 + 10 * i + j))
    write(b / "Pieris rapae" / "1.jpg", jpeg(seed=200))
    return a, b


@pytest.mark.parametrize("workers", [1, 2])
def test_keeps_every_valid_format_and_rejects_every_broken_file(tmp_path, workers):
    source = tmp_path / "source"
    for name, data in VALID.items():
        write(source / SPECIES / name, data)
    for name, (_, data) in BROKEN.items():
        write(source / SPECIES / name, data)
    summary = prepare(tmp_path / "out", source, workers=workers)
    assert (summary.kept, summary.species, summary.new) == (len(VALID), 1, len(VALID))
    assert summary.rejected == Counter(reason for reason, _ in BROKEN.values())
    assert (summary.files, summary.decoded) == (len(VALID) + len(BROKEN),) * 2
    expected = {str(source / SPECIES / name): reason for name, (reason, _) in BROKEN.items()}
    assert rejected(tmp_path / "out") == expected
    kept = {Path(row["source"]).name for row in manifest(tmp_path / "out")}
    assert kept == set(VALID)


def test_links_point_to_sources_and_manifest_matches_them(tmp_path, sources):
    out = tmp_path / "out"
    write(sources[0] / SPECIES / "10.JPG", jpeg(seed=7))  # upper case, sorts after 2.jpg
    prepare(out, *sources)
    rows = manifest(out)
    assert list(rows[0]) == ["path", "source", "species", "width", "height", "sha256"]
    assert {row["path"]: row["source"] for row in rows} == links(out)
    for row in rows:
        link, source = out / row["path"], Path(row["source"])
        assert link.is_symlink() and Path(os.readlink(link)).is_absolute()
        assert link.resolve() == source.resolve()
        assert link.parent.name == row["species"] == source.parent.name
        assert link.suffix == source.suffix.lower()
        assert (row["width"], row["height"]) == ("64", "48")
        assert row["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    order = [(row["species"], int(Path(row["path"]).stem)) for row in rows]
    assert order == sorted(order)
    # Numbered per species in (source order, natural file order).
    assert link_of(out, sources[0] / SPECIES / "10.JPG") == f"image_folder/{SPECIES}/3.jpg"
    assert link_of(out, sources[1] / SPECIES / "1.jpg") == f"image_folder/{SPECIES}/4.jpg"


def test_rerun_decodes_nothing_and_changes_nothing(tmp_path, sources):
    out = tmp_path / "out"
    first = prepare(out, *sources)
    before = (links(out), manifest(out), rejected(out))
    again = prepare(out, *sources)
    assert (first.decoded, again.decoded) == (first.files, 0)
    assert (again.new, again.removed, again.kept) == (0, 0, first.kept)
    assert (links(out), manifest(out), rejected(out)) == before


def test_added_changed_and_deleted_files_are_handled_incrementally(tmp_path, sources):
    out, (a, b) = tmp_path / "out", sources
    prepare(out, a, b)
    before = links(out)
    added = write(a / SPECIES / "3.jpg", jpeg(seed=300))
    changed = write(b / SPECIES / "1.jpg", jpeg(seed=301))  # new content, same name
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    deleted = a / "Noctua pronuba" / "1.jpg"
    deleted_link = link_of(out, deleted)
    deleted.unlink()
    summary = prepare(out, a, b)
    assert (summary.decoded, summary.new, summary.removed) == (2, 1, 1)
    after = links(out)
    assert deleted_link not in after and str(deleted) not in {r["source"] for r in manifest(out)}
    # Every other link keeps its number; the new image takes the next one.
    assert after == {k: v for k, v in before.items() if k != deleted_link} | {
        f"image_folder/{SPECIES}/5.jpg": str(added)
    }
    row = next(r for r in manifest(out) if r["source"] == str(changed))
    assert row["sha256"] == hashlib.sha256(changed.read_bytes()).hexdigest()


def test_fixed_file_is_kept_and_removed_species_folder_disappears(tmp_path, sources):
    out, (a, b) = tmp_path / "out", sources
    broken = write(a / SPECIES / "3.jpg", b"")
    prepare(out, a, b)
    assert rejected(out) == {str(broken): "empty"}
    write(broken, jpeg(seed=400))
    (b / "Pieris rapae" / "1.jpg").unlink()
    summary = prepare(out, a, b)
    assert rejected(out) == {} and summary.decoded == 1
    assert link_of(out, broken) == f"image_folder/{SPECIES}/5.jpg"
    assert not (out / "image_folder" / "Pieris rapae").exists()


def test_duplicates_within_and_across_sources_keep_the_first_copy(tmp_path, sources):
    out, (a, b) = tmp_path / "out", sources
    original = a / SPECIES / "1.jpg"
    write(a / SPECIES / "copy.jpg", original.read_bytes())
    write(b / SPECIES / "same.jpg", original.read_bytes())
    summary = prepare(out, a, b)
    assert (summary.duplicates, summary.kept) == (2, 7)
    assert rejected(out) == {
        str(a / SPECIES / "copy.jpg"): f"duplicate-of:{original}",
        str(b / SPECIES / "same.jpg"): f"duplicate-of:{original}",
    }
    assert sum(target == str(original) for target in links(out).values()) == 1
    # Source order decides which copy is kept.
    prepare(tmp_path / "reversed", b, a)
    reasons = rejected(tmp_path / "reversed")
    assert reasons[str(original)] == f"duplicate-of:{b / SPECIES / 'same.jpg'}"


def test_same_image_under_two_species_is_a_conflict_and_not_linked(tmp_path, sources):
    out, (a, b) = tmp_path / "out", sources
    twin = write(b / "Noctua pronuba" / "twin.jpg", (a / SPECIES / "2.jpg").read_bytes())
    summary = prepare(out, a, b)
    reason = f"conflict:{SPECIES}|Noctua pronuba"
    assert rejected(out) == {str(a / SPECIES / "2.jpg"): reason, str(twin): reason}
    assert summary.conflicts == 2 and summary.kept == 8 - 2
    assert str(twin) not in links(out).values()
    assert str(a / SPECIES / "2.jpg") not in links(out).values()


def test_species_names_with_spaces_hyphens_and_accents(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    names = ["Noctua pronuba", "Pieris-rapae", "Zygène d’été", "Šumavský můra"]
    for i, name in enumerate(names):
        write(a / name / "1.jpg", jpeg(seed=500 + i))
    write(a / "Aglais io  " / "1.jpg", jpeg(seed=510))  # trailing spaces
    write(b / "Aglais io" / "1.jpg", jpeg(seed=511))
    write(b / unicodedata.normalize("NFD", "Zygène d’été") / "1.jpg", jpeg(seed=512))
    summary = prepare(out, a, b)
    species = {row["species"] for row in manifest(out)}
    assert species == set(names) | {"Aglais io"} and summary.species == 5
    assert sorted(p.name for p in (out / "image_folder").iterdir()) == sorted(species)
    assert len(list((out / "image_folder" / "Zygène d’été").iterdir())) == 2


def test_hidden_entries_and_files_at_species_level_are_skipped_silently(tmp_path, sources):
    out, (a, b) = tmp_path / "out", sources
    write(a / "README.txt", b"notes")
    write(a / ".thumbnails" / "1.jpg", jpeg(seed=600))
    write(a / SPECIES / ".hidden.jpg", jpeg(seed=601))
    write(a / SPECIES / ".DS_Store", b"\0\0\0\1Bud1")
    summary = prepare(out, a, b)
    assert (summary.files, summary.kept, rejected(out)) == (7, 7, {})
    assert not any(".hidden" in s or ".thumbnails" in s for s in links(out).values())


def test_pool_does_not_fork_while_other_threads_run(tmp_path, sources):
    # A forked child could inherit a lock held by another thread: start clean workers.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _pool_context().get_start_method() != "fork"
        summary = prepare(tmp_path / "out", *sources)
    finally:
        stop.set()
        other.join()
    assert (summary.kept, summary.decoded) == (7, 7)
    prepare(tmp_path / "again", *sources)  # forked if nothing else runs threads now
    assert manifest(tmp_path / "out") == manifest(tmp_path / "again")


def test_sources_are_never_modified(tmp_path, sources):
    a, b = sources
    write(a / SPECIES / "broken.jpg", BROKEN["truncated.jpg"][1])
    write(b / SPECIES / "dup.jpg", (a / SPECIES / "1.jpg").read_bytes())

    def snapshot() -> dict[str, tuple[str, int, int]]:
        return {
            str(p): (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
                p.stat().st_mode,
            )
            for root in sources
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    prepare(tmp_path / "out", a, b)
    prepare(tmp_path / "out", a, b)
    assert snapshot() == before


def test_interrupted_run_is_repaired_without_renumbering(tmp_path, sources):
    out = tmp_path / "out"
    prepare(out, *sources)
    before = links(out)
    # As if killed after linking: no manifest, no cache, a stray temp file.
    for name in ("manifest.csv", "rejected.csv", CACHE):
        (out / name).unlink()
    (out / ".manifest.csv.tmp").write_text("partial")
    summary = prepare(out, *sources)
    assert (summary.new, summary.removed) == (0, 0) and links(out) == before
    assert {row["path"] for row in manifest(out)} == set(before)


def test_cli_prints_summary(tmp_path, sources, capsys):
    write(sources[0] / SPECIES / "empty.jpg", b"")
    assert main([str(tmp_path / "out"), *map(str, sources), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"prepared {tmp_path / 'out' / 'image_folder'} from 2 sources" in printed
    assert "kept          7 images of 3 species (7 new, 0 removed)" in printed
    assert "rejected      1 (empty 1)" in printed
    assert "cache         8 of 8 files decoded again" in printed


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t, a: [t / "out", a, t / "missing"], "does not exist"),
        (lambda t, a: [a, a], "is OUT"),
        (lambda t, a: [a / SPECIES, a], "inside source"),
        (lambda t, a: [t / "out", a, a], "overlap"),
        (lambda t, a: [t / "out", t / "out" / "image_folder" / "x", a], "image_folder"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, sources, capsys, make_args, message):
    (tmp_path / "out" / "image_folder" / "x").mkdir(parents=True)
    args = [str(p) for p in make_args(tmp_path, sources[0])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-prepare: ") and message in err and err.count("\n") == 1
    assert not (sources[0] / SPECIES / "image_folder").exists()


def test_files_without_an_image_extension_are_rejected_unread(tmp_path, sources):
    from moths_framework.data.sources import ImageFolder

    a, b = sources
    odd = [write(a / SPECIES / name, jpeg(seed=700 + i))
           for i, name in enumerate(["3.jpg.bak", "scan", "4.heic", "5.txt"])]  # fmt: skip
    summary = prepare(tmp_path / "out", a, b)
    assert rejected(tmp_path / "out") == {str(p): "unsupported-extension" for p in odd}
    assert summary.rejected == {"unsupported-extension": 4}
    assert (summary.kept, summary.files, summary.decoded) == (7, 11, 7)
    # prepare keeps exactly what the image-folder sources read, from the sources and from OUT.
    kept = {row["source"] for row in manifest(tmp_path / "out")}
    assert kept == {str(s.path) for s in ImageFolder(a).samples() + ImageFolder(b).samples()}
    linked = ImageFolder(tmp_path / "out" / "image_folder").samples()
    assert {s.path.relative_to(tmp_path / "out").as_posix() for s in linked} == set(
        links(tmp_path / "out")
    )


def test_a_second_run_on_the_same_out_exits_2_or_waits_with_wait(tmp_path, sources, capsys):
    from filelock import FileLock

    out = tmp_path / "out"
    out.mkdir()
    args = [str(out), *map(str, sources), "--no-progress", "--workers", "1"]
    held = FileLock(out / ".prepare.lock")
    held.acquire()  # as if another run were preparing OUT
    try:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("moths-prepare: another moths-prepare run is preparing")
        assert "--wait" in err and err.count("\n") == 1
        assert not (out / "manifest.csv").exists()
        waited: list[int] = []
        waiter = threading.Thread(target=lambda: waited.append(main([*args, "--wait"])))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not (out / "manifest.csv").exists()
    finally:
        held.release()
    waiter.join(timeout=60)
    assert waited == [0] and len(manifest(out)) == 7


def test_overlapping_runs_in_two_processes_leave_a_consistent_out(tmp_path, sources):
    import subprocess
    import sys

    a, b = sources
    for i in range(30):
        write(a / SPECIES / f"extra{i}.jpg", jpeg(seed=800 + i))
    out = tmp_path / "out"
    code = "import sys; from moths_framework.cli.prepare import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, str(out), str(a), str(b), "--wait", "--no-progress"]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "12"]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert results == [(0, b""), (0, b"")]
    prepare(tmp_path / "alone", a, b)
    alone = {k.replace("image_folder", ""): v for k, v in links(tmp_path / "alone").items()}
    assert {k.replace("image_folder", ""): v for k, v in links(out).items()} == alone
    assert len(manifest(out)) == len(alone) == 37
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def linked_out(tmp_path, sources):
    """Source A with a file and a species folder linked from outside it, and a link inside it."""
    a, _ = sources
    elsewhere = tmp_path / "elsewhere"
    outside_file = write(elsewhere / "loose.jpg", jpeg(seed=610))
    write(elsewhere / "Vanessa atalanta" / "1.jpg", jpeg(seed=611))
    (a / SPECIES / "5.jpg").symlink_to(outside_file)
    (a / "Vanessa atalanta").symlink_to(elsewhere / "Vanessa atalanta", target_is_directory=True)
    (a / SPECIES / "6.jpg").symlink_to(a / "Noctua pronuba" / "1.jpg")  # inside: a conflict
    return a / SPECIES / "5.jpg", a / "Vanessa atalanta", a / SPECIES / "6.jpg"


def test_symlinks_out_of_a_source_are_skipped_and_reported(tmp_path, sources, linked_out):
    outside_file, outside_folder, inside = linked_out
    out = tmp_path / "out"
    summary = prepare(out, *sources)
    reasons = rejected(out)
    assert reasons[str(outside_file)] == reasons[str(outside_folder)] == "symlink-outside-source"
    assert reasons[str(inside)].startswith("conflict:")
    assert summary.rejected == {"symlink-outside-source": 2} and summary.kept == 6
    kept = {Path(row["source"]).resolve() for row in manifest(out)}
    assert not [p for p in kept if not p.is_relative_to(tmp_path / "source_a")
                and not p.is_relative_to(tmp_path / "source_b")]  # fmt: skip
    assert not (out / "image_folder" / "Vanessa atalanta").exists()


def test_follow_symlinks_reads_what_the_links_point_to(tmp_path, sources, linked_out, capsys):
    out = tmp_path / "out"
    assert main([str(out), *map(str, sources), "--no-progress", "--follow-symlinks"]) == 0
    assert "rejected      2 (" not in capsys.readouterr().out
    reasons = rejected(out)
    assert "symlink-outside-source" not in reasons.values()
    assert {row["species"] for row in manifest(out)} >= {"Vanessa atalanta"}
    assert str(linked_out[0]) in {row["source"] for row in manifest(out)}


@pytest.mark.parametrize("follow", [False, True])
def test_a_species_folder_linked_into_the_output_is_refused(tmp_path, sources, capsys, follow):
    a, b = sources
    out = tmp_path / "out"
    prepare(out, a, b)
    before = links(out)
    (b / "Echo").symlink_to(out / "image_folder" / SPECIES, target_is_directory=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "all").symlink_to(out / "image_folder", target_is_directory=True)
    errors = []
    for sources_given in ([a, b], [tmp_path / "c" / "all"]):
        args = [str(out), *map(str, sources_given), "--no-progress"]
        assert main(args + ["--follow-symlinks"] * follow) == 2
        errors.append(capsys.readouterr().err)
    assert all(e.startswith("moths-prepare: ") and e.count("\n") == 1 for e in errors)
    assert f"{b / 'Echo'} links to" in errors[0] and "never reads its own output" in errors[0]
    assert "is OUT or inside OUT/image_folder" in errors[1]
    assert links(out) == before


def test_cleanup_removes_only_its_own_links_and_never_writes_through_one(tmp_path, sources):
    a, b = sources
    out = tmp_path / "out"
    prepare(out, a, b)
    species = out / "image_folder" / SPECIES
    write(tmp_path / "mine.jpg", b"not prepare's")
    (species / "98.jpg").symlink_to("../../../mine.jpg")  # a relative link: not one prepare made
    write(species / "97.jpg", b"a real file")
    (a / SPECIES / "1.jpg").unlink()  # its link is stale now, and prepare's own: removed
    summary = prepare(out, a, b)
    assert summary.removed == 1
    assert (species / "98.jpg").is_symlink() and (species / "97.jpg").read_bytes() == b"a real file"
    assert (tmp_path / "mine.jpg").read_bytes() == b"not prepare's"


@pytest.mark.parametrize("linked", ["image_folder", f"image_folder/{SPECIES}"])
def test_an_image_folder_that_is_a_link_is_refused(tmp_path, sources, capsys, linked):
    a, b = sources
    out = tmp_path / "out"
    prepare(out, a, b)
    target = tmp_path / "elsewhere"
    (out / linked).rename(target)
    (out / linked).symlink_to(target, target_is_directory=True)
    before = sorted(p.name for p in target.rglob("*"))
    write(a / SPECIES / "7.jpg", jpeg(seed=620))
    (a / SPECIES / "2.jpg").unlink()
    assert main([str(out), str(a), str(b), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and err.count("\n") == 1
    assert sorted(p.name for p in target.rglob("*")) == before
