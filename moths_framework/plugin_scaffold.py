"""``moths-plugins new``: write a minimal, installable plugin package for one group.

The package has a ``pyproject.toml`` with the entry point, one module with a
working example implementation, and a test that runs the group's contract
check from :mod:`moths_framework.testing`; it passes once the package is
installed (``pip install -e .`` then ``pytest``). Each group's row in
:data:`moths_framework.plugins.GROUPS` names its :class:`Template` here.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from moths_framework import __version__
from moths_framework.plugins import PluginError, PluginGroup, plugin_group

__all__ = [
    "BACKBONE",
    "DATA_SOURCE",
    "DETECTOR",
    "LABEL_HIERARCHY",
    "UNFREEZE_POLICY",
    "Template",
    "new_plugin",
]


@dataclass(frozen=True)
class Template:
    """What ``moths-plugins new`` writes for one group.

    Attributes:
        suffix: ends the class name, e.g. ``Source`` for ``GbifSource``.
        code: the package's module; ``{cls}`` is the class name.
        test_setup: lines the test runs before the check (``tmp_path`` is a folder).
        init_args: the check's keyword arguments, e.g. ``root=tmp_path``.
    """

    suffix: str
    code: str
    test_setup: str = ""
    init_args: str = ""


BACKBONE = Template(
    suffix="Backbone",
    code='''
        from torch import nn

        from moths_framework.model.backbone import Backbone
        from moths_framework.preprocessing import Preprocessing


        class {cls}(Backbone):
            """An image feature extractor: (N, 3, H, W) -> (N, num_features)."""

            def __init__(self, width: int = 32, pretrained: bool | str = False) -> None:
                super().__init__()
                self.width = width
                self.body = nn.Sequential(
                    nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                    nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                )

            @property
            def num_features(self) -> int:
                return self.width

            @property
            def preprocessing(self) -> Preprocessing:
                return Preprocessing(input_size=(224, 224))

            def forward(self, x):
                return self.body(x)

            @classmethod
            def small_example(cls) -> "{cls}":
                return cls(width=8)
        ''',
)

DATA_SOURCE = Template(
    suffix="Source",
    code='''
        from pathlib import Path

        from moths_framework.data.sources import DataSource, Sample


        class {cls}(DataSource):
            """Lists the images of ``root/<species>/<image>`` (replace with your own source)."""

            def __init__(self, root: str | Path) -> None:
                self.root = Path(root)

            def samples(self) -> list[Sample]:
                return [
                    Sample(path, path.parent.name)
                    for path in sorted(self.root.glob("*/*"))
                    if path.is_file()
                ]
        ''',
    test_setup="""
        (tmp_path / "Aglais io").mkdir()
        (tmp_path / "Aglais io" / "1.jpg").write_bytes(b"")
    """,
    init_args="root=tmp_path",
)

LABEL_HIERARCHY = Template(
    suffix="Hierarchy",
    code='''
        from moths_framework.hierarchy import HierarchySource, HierarchyTable


        class {cls}(HierarchySource):
            """Species -> genus and family (replace the table with your own reader)."""

            def read(self) -> HierarchyTable:
                return HierarchyTable(
                    ranks=("species", "genus", "family"),
                    ancestors={{"Aglais io": ("Aglais", "Nymphalidae")}},
                    origin="{cls}",
                )
        ''',
)

UNFREEZE_POLICY = Template(
    suffix="Unfreeze",
    code='''
        from moths_framework.train.unfreeze import UnfreezePolicy


        class {cls}(UnfreezePolicy):
            """Half the backbone from ``epoch`` on, the heads before."""

            def __init__(self, epoch: int = 3, train_bn: bool = False) -> None:
                super().__init__(train_bn=train_bn)
                self.epoch = epoch

            def fraction(self, epoch: int) -> float:
                return 0.5 if epoch >= self.epoch else 0.0
        ''',
)

DETECTOR = Template(
    suffix="Detector",
    code='''
        from torch import nn
        from torchvision.models.detection import FasterRCNN
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        from moths_framework.model.detector import Detector
        from moths_framework.preprocessing import DetectorPreprocessing


        class {cls}(Detector):
            """A small Faster R-CNN: frames of any size -> boxes, scores, labels."""

            def __init__(
                self,
                width: int = 32,
                min_side: int = 800,
                max_side: int = 1333,
                score_threshold: float = 0.5,
                nms_iou: float = 0.5,
                max_detections: int = 500,
            ) -> None:
                super().__init__(
                    score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
                )
                self.width = width
                self._preprocessing = DetectorPreprocessing(min_side=min_side, max_side=max_side)

            @property
            def preprocessing(self) -> DetectorPreprocessing:
                return self._preprocessing

            def build(self, num_classes: int) -> nn.Module:
                width = self.width
                body = nn.Sequential(
                    nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                    nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                    nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                )
                body.out_channels = width
                pre = self.preprocessing
                return FasterRCNN(
                    body,
                    num_classes=num_classes + 1,  # and the background
                    rpn_anchor_generator=AnchorGenerator(((16, 32, 64, 128),), ((0.5, 1.0, 2.0),)),
                    box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
                    min_size=pre.min_side,
                    max_size=pre.max_side,
                    image_mean=list(pre.mean),
                    image_std=list(pre.std),
                    box_score_thresh=self.score_threshold,
                    box_nms_thresh=self.nms_iou,
                    box_detections_per_img=self.max_detections,
                )

            @classmethod
            def small_example(cls) -> "{cls}":
                return cls(width=8, min_side=128, max_side=160)
        ''',
)

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A moths-framework plugin ({group})."
requires-python = ">=3.10"
dependencies = ["moths-framework[train]{requirement}"]

[project.optional-dependencies]
test = ["pytest>=8.0"]

[project.entry-points."{entry_point_group}"]
{name} = "{module}:{cls}"

[tool.setuptools.packages.find]
include = ["{module}*"]
"""

_TEST = '''\
"""The contract every {group} plugin must meet (moths_framework.testing)."""

from moths_framework import plugins
from {check_module} import {check}

from {module} import {cls}


def test_registered_under_its_entry_point():
    assert plugins.load("{group}", "{name}") is {cls}


def test_follows_the_contract({fixtures}):
    {setup}{check}({cls}{init_args})
'''


def _requirement() -> str:
    major, minor = (int(p) for p in re.findall(r"\d+", __version__)[:2])
    return (
        f">={major}.{minor},<{major}.{minor + 1}"
        if major == 0
        else f">={major}.{minor},<{major + 1}"
    )


def _test(row: PluginGroup, template: Template, fields: dict[str, str]) -> str:
    """The package's test: it is registered, and it passes the group's contract check."""
    check_module, _, check = row.check.partition(":")
    lines = textwrap.dedent(template.test_setup).strip().splitlines()
    setup = "".join(f"{line}\n    " for line in lines)
    init_args = f", {template.init_args}" if template.init_args else ""
    fixtures = "tmp_path" if "tmp_path" in setup + init_args else ""
    return _TEST.format(
        check_module=check_module,
        check=check,
        setup=setup,
        init_args=init_args,
        fixtures=fixtures,
        **fields,
    )


def new_plugin(name: str, group: str, output: Path | None = None) -> Path:
    """Write the package ``moths-plugin-<name>`` for ``group``; returns its folder.

    Raises:
        PluginError: a bad name or group, or the folder exists already.
    """
    row = plugin_group(group)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise PluginError(f"plugin name {name!r}: use lower-case letters, digits and _")
    root = output or Path(f"moths-plugin-{name.replace('_', '-')}")
    if root.exists():
        raise PluginError(f"{root} exists already; choose another name or --output")
    template = row.scaffold_template()
    module = f"moths_plugin_{name}"
    cls = "".join(part.title() for part in name.split("_")) + template.suffix
    group = row.name
    fields = dict(dist=module.replace("_", "-"), group=group, name=name, module=module, cls=cls)
    fields["entry_point_group"] = row.entry_point_group
    (root / module).mkdir(parents=True)
    (root / "tests").mkdir()
    body = textwrap.dedent(template.code).format(cls=cls).lstrip()
    doc = f'"""{cls}: a moths-framework plugin ({group})."""\n\n'
    (root / module / "__init__.py").write_text(doc + body)
    (root / "pyproject.toml").write_text(_PYPROJECT.format(requirement=_requirement(), **fields))
    (root / "tests" / f"test_{name}.py").write_text(_test(row, template, fields))
    (root / "README.md").write_text(
        f"# {fields['dist']}\n\nA moths-framework plugin: `{cls}` in `{row.entry_point_group}`.\n\n"
        "```console\npip install -e '.[test]'\npytest\n```\n"
    )
    return root
