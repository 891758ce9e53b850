"""The model card ``<index>/<id>/README.md``, written from the model's own metadata.

Like a Hugging Face card it opens with what the model is for; like
torchvision's ``Weights.meta`` and timm's ``pretrained_cfg`` it states the
classes, the preprocessing and the metrics exactly, so the card never
disagrees with the file it describes.
"""

from __future__ import annotations

import json
from typing import Any

from moths_framework.hierarchy import LabelHierarchy

__all__ = ["detector_card", "model_card"]


def model_card(entry: dict[str, Any], hierarchy: LabelHierarchy) -> str:
    """Markdown for one zoo entry (``index.json`` form) and its model's label hierarchy."""
    ref = f"{entry['id']}@{entry['version']}"
    parts = [
        f"# {entry['id']} {entry['version']}\n",
        f"{entry.get('description') or entry.get('title') or ''}\n",
        "## Use\n",
        "```console",
        f"moths-zoo pull {ref}",
        f"moths-infer --model zoo:{ref} photos/ --output predictions.csv",
        "```\n",
        f"Fine-tune it for your region: `model.init_from: zoo:{ref}` in a `moths-fit` config.\n",
        "## Intended use and region\n",
        f"- Region / checklist: {entry.get('region') or 'not stated'}",
        f"- Intended use: {entry.get('intended_use') or 'not stated'}\n",
        "## Ranks and classes\n",
        "| rank | classes |",
        "|---|---|",
        *(f"| {rank} | {n} |" for rank, n in entry["ranks"].items()),
        "",
        "Index 0 of every rank is `Other` (rare species, and species outside the hierarchy).\n",
        _classes(hierarchy),
        *_data_metrics_preprocessing(entry),
        "## Calibration\n",
        _calibration(entry.get("calibration", {})),
        "## Limits\n",
        *(f"- {limit}" for limit in _limits(entry)),
        "",
        *_files_and_license(entry),
    ]
    return "\n".join(parts) + "\n"


def detector_card(entry: dict[str, Any]) -> str:
    """Markdown for one detector's zoo entry (``task: detection``)."""
    ref = f"{entry['id']}@{entry['version']}"
    parts = [
        f"# {entry['id']} {entry['version']}\n",
        f"{entry.get('description') or entry.get('title') or ''}\n",
        "## Use\n",
        "A detector: it finds the moths in a trap frame; a classifier then names each one.\n",
        "```console",
        f"moths-zoo pull {ref}",
        f"moths-infer --detector zoo:{ref} --model CLASSIFIER.onnx frames/ --output detections.csv",
        "```\n",
        "## Intended use and region\n",
        f"- Region / checklist: {entry.get('region') or 'not stated'}",
        f"- Intended use: {entry.get('intended_use') or 'not stated'}\n",
        "## Classes\n",
        ", ".join(f"`{name}`" for name in entry["classes"]) + "\n",
        "## Detector\n",
        _json_block(entry.get("detector", {})),
        *_data_metrics_preprocessing(entry),
        "## Limits\n",
        *(f"- {limit}" for limit in entry.get("limits", [])),
        "",
        *_files_and_license(entry),
    ]
    return "\n".join(parts) + "\n"


def _data_metrics_preprocessing(entry: dict[str, Any]) -> list[str]:
    return [
        "## Training data\n",
        _table(entry.get("training_data", {})),
        "## Metrics (validation split)\n",
        _table(entry.get("metrics", {})),
        "## Preprocessing\n",
        _json_block(entry.get("preprocessing", {})),
    ]


def _json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```\n"


def _files_and_license(entry: dict[str, Any]) -> list[str]:
    return [
        "## Files\n",
        "| role | file | size | sha256 |",
        "|---|---|---|---|",
        *(
            f"| {f['role']} | `{f['url']}` | {f['size']:,} B | `{f['sha256']}` |"
            for f in entry["files"]
        ),
        "",
        "## License and citation\n",
        f"- License: {entry.get('license') or 'not stated'}",
        f"- Framework: moths-framework {entry.get('framework_version', '?')}",
        f"- Created: {entry.get('created', '?')}\n",
        "```",
        entry.get("citation") or "no citation given",
        "```",
    ]


def _classes(hierarchy: LabelHierarchy) -> str:
    lines = ["<details><summary>All classes per rank</summary>\n"]
    for rank in hierarchy.ranks:
        lines.append(f"- **{rank}**: {', '.join(hierarchy.classes(rank))}")
    lines.append("\n</details>\n")
    return "\n".join(lines)


def _table(values: dict[str, Any]) -> str:
    if not values:
        return "not recorded\n"
    rows = ["| | |", "|---|---|"]
    for key, value in values.items():
        shown = (
            f"{value:.4f}" if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
        )
        rows.append(f"| {key} | {shown.strip(chr(34))} |")
    return "\n".join(rows) + "\n"


def _calibration(calibration: dict[str, Any]) -> str:
    temperature = calibration.get("temperature", {})
    if not calibration.get("calibrated"):
        return (
            "Not calibrated: softmax temperature 1.0 at every rank (`moths-calibrate` sets it).\n"
        )
    return "Softmax temperature per rank: " + json.dumps(temperature, sort_keys=True) + "\n"


def _limits(entry: dict[str, Any]) -> list[str]:
    limits = list(entry.get("limits", []))
    limits.append(
        "Species it was not trained on are answered as `Other` or, when unsure, at a broader "
        "rank; it has not seen moths from outside its region."
    )
    return limits
