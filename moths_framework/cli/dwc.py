"""``moths-dwc``: ``occurrences.csv`` to a Darwin Core Archive for GBIF.

Parses, then calls :mod:`moths_framework.occurrences` (the records and EML) and
writes the archive (a ``.zip`` or a folder) and its ``run.json``: occurrence core, or
with ``--core event`` a sampling-event archive whose events are moths-track's
``nights.csv``. Imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from moths_framework.nights.deployments import read_deployments
from moths_framework.nights.sampled_nights import read_nights
from moths_framework.occurrences.archive import write_archive
from moths_framework.occurrences.counts import read_occurrences
from moths_framework.occurrences.dataset import read_dataset
from moths_framework.occurrences.eml import eml_xml
from moths_framework.occurrences.export import DarwinCoreExport, prepare_export
from moths_framework.occurrences.taxa import kinds_in_words
from moths_framework.output_folders import (
    check_may_overwrite,
    check_replaceable_folder,
    record_written,
)
from moths_framework.provenance import Run, read_provenance, sidecar_path

__all__ = ["main", "parser"]

PROG = "moths-dwc"


def parser() -> argparse.ArgumentParser:
    """The command line of ``moths-dwc``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write moths-count's occurrences.csv as a Darwin Core Archive "
        "(occurrence.txt, meta.xml, eml.xml) to publish on GBIF.",
    )
    p.add_argument("occurrences", help="occurrences.csv from moths-count")
    p.add_argument(
        "--deployments",
        required=True,
        help="deployments.csv: each deployment's latitude, longitude and trap type",
    )
    p.add_argument(
        "--dataset",
        help="dataset.yaml: title, abstract, creators, license (CC0-1.0, CC-BY-4.0, "
        "CC-BY-NC-4.0) ...; default: a generic title, CC-BY-4.0",
    )
    p.add_argument(
        "--output",
        required=True,
        help="the archive: a .zip file, or else a folder; replaced only when moths-dwc wrote it",
    )
    p.add_argument(
        "--core",
        choices=("occurrence", "event"),
        default="occurrence",
        help="occurrence: one record per taxon per night (default); event: a sampling-event "
        "archive, one event per night sampled (nights without a moth too) and per "
        "deployment, the occurrences linked to their night; needs --nights",
    )
    p.add_argument(
        "--nights",
        help="nights.csv, written by moths-track beside tracks.csv: the nights sampled "
        "(with --core event)",
    )
    p.add_argument(
        "--include-other",
        action="store_true",
        help="keep 'Other' (novel) and unanswered individuals, as the order Lepidoptera "
        "(default: left out and counted in the summary); non-moths are never kept",
    )
    return p


def main(args: list[str] | None = None) -> int:
    """Run ``moths-dwc``; 0 when the archive was written, 1 when there is nothing to
    write (no occurrence, nor with --core event a night; nothing written), 2 on a usage
    error."""
    opts = parser().parse_args(args)
    run = Run(PROG, args)
    output = Path(opts.output)
    try:
        _check_core(opts)
        _check_output(output)
        dataset = read_dataset(opts.dataset)
        export = prepare_export(
            read_occurrences(opts.occurrences),
            read_deployments(opts.deployments),
            dataset,
            read_provenance(opts.occurrences),
            opts.include_other,
            read_nights(opts.nights) if opts.nights else None,
        )
        if not export.records and not export.event_core:
            print(_nothing_to_write(export, opts.occurrences), file=sys.stderr)
            return 1
        for path in (opts.occurrences, opts.deployments, opts.dataset, opts.nights):
            if path:
                run.add_input(path)
        run.settings |= {
            "core": opts.core,
            "include_other": opts.include_other,
            "license": dataset.license,
        }
        eml = eml_xml(dataset, export.coverage, export.methods, date.today().isoformat())
        output.parent.mkdir(parents=True, exist_ok=True)
        core, extensions = export.data_files()
        write_archive(output, core, extensions, eml, run.record(output), PROG)
    except (OSError, ValueError) as error:  # TracksError, DeploymentError, DatasetError ...
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if output.suffix.lower() == ".zip":
        record_written(output.parent, [output.name], PROG)
        run.write(output)
    print(_summary(export, dataset.license, output))
    _warnings(export, opts.dataset is None, dataset.license)
    return 0


def _check_core(opts) -> None:
    """--core event comes with --nights, and --nights only with it."""
    if opts.core == "event" and not opts.nights:
        raise ValueError(
            "--core event needs --nights nights.csv (moths-track writes it beside tracks.csv)"
        )
    if opts.nights and opts.core != "event":
        raise ValueError("--nights makes the events of --core event; add --core event")


def _nothing_to_write(export: DarwinCoreExport, occurrences: str) -> str:
    words = kinds_in_words(export.left_out)
    if not words:
        return f"{PROG}: no occurrence to write: {occurrences} holds none; nothing written"
    return (
        f"{PROG}: no occurrence to write: {occurrences} holds only individuals left out "
        f"({words}; --include-other keeps Other and unanswered ones); nothing written"
    )


def _warnings(export: DarwinCoreExport, no_dataset: bool, license_name: str) -> None:
    """What the archive lacks for publishing, on stderr."""
    if no_dataset:
        print(
            f"{PROG}: no --dataset: a generic title, no creator, {license_name}; name them "
            "in a dataset.yaml before publishing",
            file=sys.stderr,
        )
    if not export.identification.models:
        print(
            f"{PROG}: no run.json chain names the classifier: identifiedBy is empty",
            file=sys.stderr,
        )


def _check_output(output: Path) -> None:
    """The archive may be written there: a zip (and its run.json) moths-dwc wrote, or a
    folder it made."""
    if output.suffix.lower() == ".zip":
        if output.is_dir():
            raise ValueError(f"--output {output} is a folder; name a .zip file or a new folder")
        check_may_overwrite(output.parent, [output.name, sidecar_path(output).name], PROG)
    else:
        check_replaceable_folder(output, PROG)


def _summary(export: DarwinCoreExport, license_name: str, output: Path) -> str:
    individuals = sum(int(r["individualCount"]) for r in export.records)
    left = sum(export.left_out.values())
    words = kinds_in_words(export.left_out)
    events = ""
    if export.event_core:
        nights = {r["eventID"] for r in export.events if r["parentEventID"]}
        empty = len(nights - {r["eventID"] for r in export.records})
        events = (
            f"{export.nights} night{'s' * (export.nights != 1)} as events "
            f"({empty} without an occurrence), "
        )
    return (
        f"{PROG}: {events}{len(export.records)} occurrence{'s' * (len(export.records) != 1)} "
        f"({individuals} individuals) under {license_name}; "
        f"left out {left} individual{'s' * (left != 1)}{f' ({words})' if words else ''}; "
        f"wrote {output}"
    )
