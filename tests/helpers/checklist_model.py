"""The model moths-serve's tests serve: a checklist the size of the Dutch one (about
2,700 species) on the four ranks species, group, family, genus, on ``onnx_models``'
tiny backbone.

``/process`` answers every score and logit of every rank, so the size of a
response, and what encoding it costs, grows with the checklist: the serve tests
run at the real size. The hierarchy is synthetic and fixed: 900 genera of 3
species, 80 families, 2 groups (micro, macro), so every run builds the same model.
"""

from __future__ import annotations

from pathlib import Path

from helpers.onnx_models import export_model, metadata, tiny_net
from moths_framework.hierarchy import LabelHierarchy

SPECIES = 2700
GENERA = 900
FAMILIES = 80


def checklist_hierarchy(species: int = SPECIES) -> LabelHierarchy:
    """``species`` species named ``Genus0123 sp0369``, spread evenly over genera,
    families and groups in the proportions above."""
    genera = max(1, species * GENERA // SPECIES)
    families = max(1, species * FAMILIES // SPECIES)
    ancestors = {}
    for s in range(species):
        genus = s * genera // species
        family = genus * families // genera
        group = "micro" if family < 0.7 * families else "macro"
        ancestors[f"Genus{genus:04d} sp{s:04d}"] = (
            group,
            f"Family{family:02d}",
            f"Genus{genus:04d}",
        )
    return LabelHierarchy(("species", "group", "family", "genus"), ancestors)


CHECKLIST = checklist_hierarchy()


def export_checklist_model(path: Path) -> Path:
    """The tiny backbone with one head per rank of :data:`CHECKLIST`, exported to ``path``."""
    return export_model(tiny_net(CHECKLIST), path, metadata(hierarchy=CHECKLIST))
