"""Tiny ONNX classifiers made on the fly, exported the way moths-export writes them
(input ``image``, one output per rank plus ``features``, moths metadata), for the
inference, moths-infer and serve tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference import ModelMetadata
from moths_framework.preprocessing import Preprocessing

HIERARCHY = LabelHierarchy(
    ("species", "group", "family", "genus"),
    {
        "Aus alpha": ("micro", "Fam1", "Aus"),
        "Aus beta": ("micro", "Fam1", "Aus"),
        "Bus gamma": ("micro", "Fam1", "Bus"),
        "Cus delta": ("macro", "Fam2", "Cus"),
        "Dus epsilon": ("macro", "Fam3", "Dus"),
    },
    bundled=["Rare one"],
)
PREPROCESSING = Preprocessing(input_size=(32, 32), crop_pct=0.875)


class _Heads(nn.Module):
    """A feature extractor and one linear head per rank; returns logits per rank, features."""

    def __init__(
        self, features: nn.Module, width: int, hierarchy: LabelHierarchy = HIERARCHY
    ) -> None:
        super().__init__()
        self.features = features
        counts = hierarchy.num_classes()
        self.heads = nn.ModuleList(nn.Linear(width, counts[r]) for r in hierarchy.ranks)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.features(image)
        return (*(head(features) for head in self.heads), features)


def tiny_net(hierarchy: LabelHierarchy = HIERARCHY) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    return _Heads(nn.Sequential(conv, nn.Flatten()), 8, hierarchy).eval()


class _Zero(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.mean(dim=(1, 2, 3)).unsqueeze(1) * 0.0  # keeps the batch axis


def constant_net(logits: dict[str, list[float]]) -> nn.Module:
    """Heads whose logits are ``logits[rank]`` whatever the image."""
    net = _Heads(_Zero(), 1)
    with torch.no_grad():
        for rank, head in zip(HIERARCHY.ranks, net.heads, strict=True):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(logits[rank]))
    return net.eval()


def export_model(net: nn.Module, path: Path, metadata: ModelMetadata | None = None) -> Path:
    """Export like moths-export: input ``image``, one output per rank, metadata props."""
    ranks = metadata.hierarchy.ranks if metadata is not None else HIERARCHY.ranks
    outputs = [*ranks, "features"]
    torch.onnx.export(
        net, torch.zeros(2, 3, *PREPROCESSING.input_size), str(path), dynamo=False,
        opset_version=17, input_names=["image"], output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in ["image", *outputs]},
    )  # fmt: skip
    if metadata is not None:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, metadata.to_props())
        onnx.save(model, str(path))
    return path


def metadata(
    temperature: dict[str, float] | None = None, hierarchy: LabelHierarchy = HIERARCHY
) -> ModelMetadata:
    return ModelMetadata(hierarchy, PREPROCESSING, {"backbone": "tiny"}, temperature or {})


def save_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def logits_for(species=None, group=None, family=None, genus=None) -> dict[str, list[float]]:
    """Logits giving the named class of each rank the probability ``p``: {rank: (name, p)}."""
    given = {"species": species, "group": group, "family": family, "genus": genus}
    result = {}
    for rank, choice in given.items():
        classes = HIERARCHY.classes(rank)
        name, prob = choice or (classes[1], 1 / len(classes))
        rest = (1 - prob) / (len(classes) - 1)
        result[rank] = [float(np.log(prob if c == name else rest)) for c in classes]
    return result


def look_alike_logits() -> dict[str, list[float]]:
    """An unlisted moth (Aus alpha, 0.6) with a listed look-alike (Aus beta, 0.3)."""
    species = {"Aus alpha": 0.6, "Aus beta": 0.3}
    logits = logits_for()
    classes = HIERARCHY.classes("species")
    rest = (1 - sum(species.values())) / (len(classes) - len(species))
    logits["species"] = [float(np.log(species.get(c, rest))) for c in classes]
    return logits
