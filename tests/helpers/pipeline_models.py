"""A pipeline's models made so that what each says of a crop is known from its pixels.

- :func:`brightness_classifier`: the species is ``Aus alpha`` for a bright crop and
  ``Cus delta`` for a dark one (the crop's mean grey level decides);
- :func:`leaf_filter`: a one-rank moth filter (``moth`` / ``nonmoth``): a green
  crop (a leaf) is ``nonmoth``, a grey one ``moth``;
- :func:`pipeline_file`: a pipeline YAML naming such files;
- the frames: :func:`~helpers.onnx_detectors.grid_detector` finds bright cells on a
  dark sheet, so a frame's boxes are the cells painted on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.onnx_models import HIERARCHY, export_model, metadata
from moths_framework.hierarchy import LabelHierarchy

BRIGHT_SPECIES, DARK_SPECIES = "Aus alpha", "Cus delta"
FILTER_HIERARCHY = LabelHierarchy(("species",), {"moth": (), "nonmoth": ()})
LEAF = (40, 200, 40)  # a green crop: the filter's non-moth


class _Linear(nn.Module):
    """Heads over hand-set features of the (normalised) crop: logits = features @ W + b."""

    def __init__(self, feature: nn.Module, weights: dict[str, np.ndarray], ranks) -> None:  # noqa: ANN001
        super().__init__()
        self.feature = feature
        self.ranks = list(ranks)
        self.heads = nn.ModuleList()
        for rank in self.ranks:
            w, b = weights[rank]
            head = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                head.weight.copy_(torch.tensor(w, dtype=torch.float32))
                head.bias.copy_(torch.tensor(b, dtype=torch.float32))
            self.heads.append(head)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.feature(image)
        return (*(head(features) for head in self.heads), features)


class _MeanGrey(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(1, 2, 3)).unsqueeze(1)


class _GreenOverRed(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channels = image.mean(dim=(2, 3))
        return (channels[:, 1] - channels[:, 0]).unsqueeze(1)


def brightness_classifier(path: Path) -> Path:
    """Species ``Aus alpha`` for a bright crop, ``Cus delta`` for a dark one; the other
    ranks follow the species (their ancestors in ``HIERARCHY``)."""
    weights = {}
    for rank in HIERARCHY.ranks:
        classes = HIERARCHY.classes(rank)
        bright = HIERARCHY.ancestors(BRIGHT_SPECIES)[rank] if rank != "species" else BRIGHT_SPECIES
        dark = HIERARCHY.ancestors(DARK_SPECIES)[rank] if rank != "species" else DARK_SPECIES
        w = np.zeros((len(classes), 1))
        w[classes.index(bright)] += 8.0
        w[classes.index(dark)] -= 8.0
        weights[rank] = (w, np.zeros(len(classes)))
    net = _Linear(_MeanGrey(), weights, HIERARCHY.ranks).eval()
    return export_model(net, path, metadata())


def leaf_filter(path: Path) -> Path:
    """``nonmoth`` for a green crop, ``moth`` for a grey one (``Other`` never)."""
    classes = FILTER_HIERARCHY.classes("species")
    w = np.zeros((len(classes), 1))
    b = np.full(len(classes), -10.0)
    w[classes.index("moth")], b[classes.index("moth")] = -4.0, 3.0
    w[classes.index("nonmoth")], b[classes.index("nonmoth")] = 4.0, 0.0
    net = _Linear(_GreenOverRed(), {"species": (w, b)}, ["species"]).eval()
    return export_model(net, path, metadata(hierarchy=FILTER_HIERARCHY))


def pipeline_file(
    path: Path,
    classifier: Path | str,
    detector: Path | str | None = None,
    filter_: Path | str | None = None,
    extra: str = "",
) -> Path:
    """A pipeline YAML naming these files (absolute paths), plus ``extra`` lines."""
    lines = [f"classifier: {{model: '{classifier}'}}"]
    if detector is not None:
        lines.append(f"detector: {{model: '{detector}'}}")
    if filter_ is not None:
        lines.append(f"filter: {{model: '{filter_}'}}")
    path.write_text("\n".join([*lines, extra]) + "\n")
    return path
