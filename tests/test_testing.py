"""moths_framework.testing: every group's contract check, and the one way they all
build a plugin (class + init_args, small_example(), factory, or instance)."""

from __future__ import annotations

import pytest
from tiny_backbone import TinyCNN

from moths_framework import plugins
from moths_framework.data.sources import DataSource, ImageFolder, ImageFolders, Sample
from moths_framework.hierarchy import CsvHierarchy, HierarchySource, HierarchyTable
from moths_framework.messages import first_few
from moths_framework.testing import (
    ContractError,
    check_backbone,
    check_data_source,
    check_hierarchy_source,
    check_plugin,
    check_unfreeze_policy,
)
from moths_framework.train.unfreeze import GradualUnfreeze, UnfreezePolicy


def _built_in_init_args(test_data, tmp_path) -> dict[str, dict]:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,species\nsource_a/x.jpg,Aglais io\n")
    return {
        "image_folder": {"root": test_data / "source_a"},
        "image_folders": {"roots": [test_data / "source_a", test_data / "source_b"]},
        "manifest": {"path": manifest},
        "csv": {"path": test_data / "hierarchy.csv"},
        "milestones": {"epochs": [2, 5], "fractions": [0.5, 1.0]},
    }


def test_every_built_in_plugin_follows_its_groups_contract(test_data, tmp_path):
    init_args = _built_in_init_args(test_data, tmp_path)
    checked = []
    for row in plugins.GROUPS:
        for name, info in plugins.available(row.name).items():
            if info.distribution == "moths-framework":
                check_plugin(row.name, plugins.load(row.name, name), **init_args.get(name, {}))
                checked.append(name)
    assert {"image_folder", "manifest", "csv", "gradual", "milestones"} <= set(checked)


def test_a_check_takes_a_class_with_init_args_a_factory_or_an_instance(test_data):
    root = test_data / "source_a"
    check_data_source(ImageFolder, root=root)
    check_data_source(lambda: ImageFolder(root))
    check_data_source(ImageFolder(root))  # as the README showed before
    check_unfreeze_policy(GradualUnfreeze, epoch_start=2)
    check_hierarchy_source(CsvHierarchy(test_data / "hierarchy.csv"))
    with pytest.raises(TypeError, match="need a class or factory, not an instance"):
        check_data_source(ImageFolder(root), root=root)


def test_init_args_build_by_the_constructor_even_with_a_small_example():
    check_backbone(TinyCNN, width=4)  # TinyCNN.small_example() raises


def test_a_class_without_small_example_and_init_args_is_built_by_calling_it():
    class Policy(UnfreezePolicy):
        def fraction(self, epoch: int) -> float:
            return 1.0

    check_unfreeze_policy(Policy)


def test_building_failures_are_one_line_naming_the_call(test_data):
    with pytest.raises(ContractError, match=r"ImageFolders\(roots=\[\]\) failed: DataSourceError"):
        check_data_source(ImageFolders, roots=[])
    with pytest.raises(ContractError, match="not a subclass of moths_framework.data.sources"):
        check_data_source(CsvHierarchy, path=test_data / "hierarchy.csv")
    with pytest.raises(ContractError, match=r"<lambda>\(\) returned a int, not a moths_framework"):
        check_hierarchy_source(lambda: 3)
    with pytest.raises(ContractError, match="object is not a moths_framework.train.unfreeze"):
        check_unfreeze_policy(object())
    with pytest.raises(ContractError, match=r"TinyCNN.small_example\(\) failed"):
        check_backbone(TinyCNN)
    with pytest.raises(plugins.PluginError, match="unknown plugin group 'nope'"):
        check_plugin("nope", TinyCNN)


class Careless(DataSource):
    """Lists something that is not a Sample, and other images on each call."""

    def __init__(self) -> None:
        self.calls = 0

    def samples(self) -> list:
        self.calls += 1
        return [Sample(f"{self.calls}.jpg", "Aglais io"), "nope"]


def test_each_failing_data_source_clause_gets_its_own_line():
    with pytest.raises(ContractError) as err:
        check_data_source(Careless)
    lines = str(err.value).splitlines()
    assert lines[0] == "Careless breaks 2 of 2 data source contract clauses:"
    assert (
        lines[1]
        == "  - samples() lists Sample objects: samples() holds 1 items that are not Sample"
    )
    assert lines[2] == "  - samples() is deterministic: two samples() calls differ"


class Headless(HierarchySource):
    def read(self) -> HierarchyTable:
        names = {f"Species {i}": ("Genus",) if i % 2 else () for i in range(14)}
        return HierarchyTable(ranks=("species", "genus"), ancestors=names, origin="test")


def test_a_hierarchy_names_its_first_few_broken_species():
    with pytest.raises(ContractError, match="Headless breaks 1 of 1 label hierarchy") as err:
        check_hierarchy_source(Headless)
    assert str(err.value).endswith(
        "Species 0, Species 2, Species 4, Species 6, Species 8 and 2 more"
    )


class Refreezes(UnfreezePolicy):
    def fraction(self, epoch: int) -> float:
        return 1.0 if epoch < 3 else 0.5


def test_a_policy_whose_fraction_decreases_fails():
    with pytest.raises(ContractError, match=r"fraction\(epoch\) decreases at epochs \[3\]"):
        check_unfreeze_policy(Refreezes)


def test_first_few_names_the_rest_by_count():
    assert first_few(["a", "b", "c"], limit=2) == "a, b and 1 more"
    assert first_few(["a", "b"], limit=2) == "a, b"
    assert first_few([]) == ""
