"""``moths-plugins new``: write a minimal, installable plugin package for one group.

The package has a ``pyproject.toml`` with the entry point, one module with a
working example implementation, and a test that runs the group's contract
check from :mod:`moths_framework.testing`; it passes once the package is
installed (``pip install -e .`` then ``pytest``).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from moths_framework import __version__
from moths_framework.plugins import GROUPS, PluginError

__all__ = ["new_plugin"]

_CODE = {
    "backbones": (
        "Backbone",
        '''
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
        "check_backbone",
        "check_backbone({cls})",
    ),
    "data_sources": (
        "Source",
        '''
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
        "check_data_source",
        '(tmp_path / "Aglais io").mkdir()\n'
        '    (tmp_path / "Aglais io" / "1.jpg").write_bytes(b"")\n'
        "    check_data_source({cls}(tmp_path))",
    ),
    "label_hierarchies": (
        "Hierarchy",
        '''
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
        "check_hierarchy_source",
        "check_hierarchy_source({cls}())",
    ),
    "unfreeze_policies": (
        "Unfreeze",
        '''
        from moths_framework.finetuning import UnfreezePolicy


        class {cls}(UnfreezePolicy):
            """Half the backbone from ``epoch`` on, the heads before."""

            def __init__(self, epoch: int = 3, train_bn: bool = False) -> None:
                super().__init__(train_bn=train_bn)
                self.epoch = epoch

            def fraction(self, epoch: int) -> float:
                return 0.5 if epoch >= self.epoch else 0.0
        ''',
        "check_unfreeze_policy",
        "check_unfreeze_policy({cls}())",
    ),
}

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

[project.entry-points."moths_framework.{group}"]
{name} = "{module}:{cls}"

[tool.setuptools.packages.find]
include = ["{module}*"]
"""

_TEST = '''\
"""The contract every {group} plugin must meet (moths_framework.testing)."""

from moths_framework import plugins
from moths_framework.testing import {check}

from {module} import {cls}


def test_registered_under_its_entry_point():
    assert plugins.load("{group}", "{name}") is {cls}


def test_follows_the_contract(tmp_path):
    {call}
'''


def _requirement() -> str:
    major, minor = (int(p) for p in re.findall(r"\d+", __version__)[:2])
    return (
        f">={major}.{minor},<{major}.{minor + 1}"
        if major == 0
        else f">={major}.{minor},<{major + 1}"
    )


def new_plugin(name: str, group: str, output: Path | None = None) -> Path:
    """Write the package ``moths-plugin-<name>`` for ``group``; returns its folder.

    Raises:
        PluginError: a bad name or group, or the folder exists already.
    """
    group = group.removeprefix("moths_framework.")
    if f"moths_framework.{group}" not in GROUPS:
        known = ", ".join(g.removeprefix("moths_framework.") for g in GROUPS)
        raise PluginError(f"unknown plugin group {group!r}; choose one of {known}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise PluginError(f"plugin name {name!r}: use lower-case letters, digits and _")
    root = output or Path(f"moths-plugin-{name.replace('_', '-')}")
    if root.exists():
        raise PluginError(f"{root} exists already; choose another name or --output")
    suffix, code, check, call = _CODE[group]
    module = f"moths_plugin_{name}"
    cls = "".join(part.title() for part in name.split("_")) + suffix
    fields = dict(dist=module.replace("_", "-"), group=group, name=name, module=module, cls=cls)
    (root / module).mkdir(parents=True)
    (root / "tests").mkdir()
    body = textwrap.dedent(code).format(cls=cls).lstrip()
    doc = f'"""{cls}: a moths-framework plugin ({group})."""\n\n'
    (root / module / "__init__.py").write_text(doc + body)
    (root / "pyproject.toml").write_text(_PYPROJECT.format(requirement=_requirement(), **fields))
    test = _TEST.format(check=check, call=call.format(cls=cls), **fields)
    (root / "tests" / f"test_{name}.py").write_text(test)
    (root / "README.md").write_text(
        f"# {fields['dist']}\n\nA moths-framework plugin: `{cls}` in `moths_framework.{group}`.\n\n"
        "```console\npip install -e '.[test]'\npytest\n```\n"
    )
    return root
