"""The reference pages in docs/ name what the code writes and reads.

A key, column, field or plugin group renamed in the code, and not in its
reference page, fails here rather than in a reader's hands.
"""

from __future__ import annotations

import json
from pathlib import Path

from moths_framework.evaluate.folder_writer import prediction_csv_columns
from moths_framework.inference import detector_metadata, metadata
from moths_framework.inference.detection_writer import detection_columns
from moths_framework.plugins import GROUPS

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference"


def _missing(names, page) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [name for name in names if f"`{name}`" not in text]


def test_the_onnx_page_names_every_metadata_key():
    keys = [getattr(metadata, name) for name in metadata.__all__ if name.endswith("_KEY")]
    assert len(keys) >= 7
    inputs = [metadata.INPUT_NAME, metadata.FEATURES_OUTPUT]
    assert not _missing([*keys, *inputs], REFERENCE / "onnx-model.md")


def test_the_onnx_page_names_every_detector_key_input_and_output():
    names = [getattr(detector_metadata, n) for n in detector_metadata.__all__ if n.isupper()]
    assert {"moths.classes", "moths.nms_iou", "images", "boxes", "labels"} <= set(names)
    text = (REFERENCE / "onnx-model.md").read_text(encoding="utf-8")
    detector_section = text[text.index("## Detector") :]
    assert not [name for name in names if f"`{name}`" not in detector_section]


def test_the_prediction_folder_page_names_every_column():
    columns = prediction_csv_columns(["<rank>"], novelty=True)
    assert not _missing(columns, REFERENCE / "prediction-folder.md")


def test_the_detections_page_names_every_column():
    columns = detection_columns(["<rank>"], novelty=True, moth_filter=True)
    assert "detection_score" in columns and "filter_score" in columns
    assert not _missing(columns, REFERENCE / "detections-csv.md")


def test_the_zoo_index_page_names_every_field():
    schema_path = REPO / "moths_framework" / "zoo" / "index.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    fields = [*schema["$defs"]["entry"]["properties"], *schema["$defs"]["file"]["properties"]]
    assert not _missing([*schema["properties"], *fields], REFERENCE / "zoo-index.md")


def test_the_plugin_guide_has_a_row_per_plugin_group():
    text = (REPO / "docs" / "plugins" / "writing.md").read_text(encoding="utf-8")
    for group in GROUPS:
        row = (
            f"| `{group.name}` | `{group.entry_point_group}` | `{group.base.replace(':', '.')}` "
            f"| `{group.yaml_key}` | `{group.check.split(':')[1]}` |"
        )
        assert row in text, f"docs/plugins/writing.md has no row {row!r}"
