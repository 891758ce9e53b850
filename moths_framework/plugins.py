"""Plugin discovery through Python entry points.

The groups that extend the framework are the rows of one table, :data:`GROUPS`:
the registry, ``moths-plugins`` (listing and ``new``), the scaffold and
:mod:`moths_framework.testing` all read it, so a new plugin point is one new
row (plus its base class, contract check and scaffold template). Built-ins are
declared in the core's own ``pyproject.toml`` and travel the same path as
third-party plugins::

    [project.entry-points."moths_framework.backbones"]
    my_net = "my_package.backbones:MyNet"

Discovery is lazy (nothing is imported until asked) and strict: a plugin that
fails to import is reported by name with its error and skipped, and a name
claimed by two distributions is an error naming both.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = [
    "GROUPS",
    "PluginError",
    "PluginConflictError",
    "PluginGroup",
    "PluginInfo",
    "PluginStatus",
    "available",
    "conflicts",
    "load",
    "load_all",
    "plugin_group",
    "status",
]

log = logging.getLogger(__name__)


class PluginError(RuntimeError):
    """A plugin is unknown, cannot be imported, or is registered twice."""


class PluginConflictError(PluginError):
    """One plugin name is registered by two different distributions."""


@dataclass(frozen=True)
class PluginGroup:
    """One plugin point. ``base``, ``check`` and ``template`` are ``"module:name"``
    paths, imported only when asked for, so this module never needs torch.

    Attributes:
        name: the short name, e.g. ``backbones`` (``moths-plugins new --group``).
        base: the class every plugin of the group subclasses.
        yaml_key: where a config names one by ``class_path``, e.g. ``model.backbone``.
        check: the contract check in :mod:`moths_framework.testing`.
        template: what ``moths-plugins new`` writes (a ``plugin_scaffold.Template``).
    """

    name: str
    base: str
    yaml_key: str
    check: str
    template: str

    @property
    def entry_point_group(self) -> str:
        """The entry-point group plugins register in, e.g. ``moths_framework.backbones``."""
        return f"moths_framework.{self.name}"

    def base_class(self) -> type:
        """The base class, imported now (it may need torch)."""
        return _import(self.base)

    def contract_check(self) -> Any:
        """The ``check_<x>(plugin, /, **init_args)`` function, imported now."""
        return _import(self.check)

    def scaffold_template(self) -> Any:
        """The ``moths-plugins new`` template, imported now."""
        return _import(self.template)


GROUPS: tuple[PluginGroup, ...] = (
    PluginGroup(
        name="backbones",
        base="moths_framework.model.backbone:Backbone",
        yaml_key="model.backbone",
        check="moths_framework.testing:check_backbone",
        template="moths_framework.plugin_scaffold:BACKBONE",
    ),
    PluginGroup(
        name="data_sources",
        base="moths_framework.data.sources:DataSource",
        yaml_key="data.source",
        check="moths_framework.testing:check_data_source",
        template="moths_framework.plugin_scaffold:DATA_SOURCE",
    ),
    PluginGroup(
        name="label_hierarchies",
        base="moths_framework.hierarchy:HierarchySource",
        yaml_key="data.hierarchy",
        check="moths_framework.testing:check_hierarchy_source",
        template="moths_framework.plugin_scaffold:LABEL_HIERARCHY",
    ),
    PluginGroup(
        name="unfreeze_policies",
        base="moths_framework.train.unfreeze:UnfreezePolicy",
        yaml_key="unfreeze",
        check="moths_framework.testing:check_unfreeze_policy",
        template="moths_framework.plugin_scaffold:UNFREEZE_POLICY",
    ),
    PluginGroup(
        name="detectors",
        base="moths_framework.model.detector:Detector",
        yaml_key="model.detector",
        check="moths_framework.testing:check_detector",
        template="moths_framework.plugin_scaffold:DETECTOR",
    ),
)


@dataclass(frozen=True)
class PluginInfo:
    """What the installed metadata says about one plugin (nothing imported)."""

    group: str
    name: str
    value: str  # "module:object"
    distribution: str
    version: str

    @property
    def class_path(self) -> str:
        """What a YAML config writes as ``class_path``: the full dotted path, which
        resolves without the plugin being imported first (a short class name does not)."""
        return self.value.replace(":", ".")


@dataclass(frozen=True)
class PluginStatus:
    """A plugin and the outcome of importing it: ``error`` is None when it loaded."""

    info: PluginInfo
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def plugin_group(name: str) -> PluginGroup:
    """The row of :data:`GROUPS` called ``name``, with or without ``moths_framework.``.

    Raises:
        PluginError: no such group (the groups are listed).
    """
    for row in GROUPS:
        if name in (row.name, row.entry_point_group):
            return row
    known = ", ".join(row.name for row in GROUPS)
    raise PluginError(f"unknown plugin group {name!r}; the groups are: {known}")


def _check_group(group: str) -> str:
    return plugin_group(group).entry_point_group


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _info(group: str, ep: EntryPoint) -> PluginInfo:
    dist = ep.dist
    return PluginInfo(
        group=group,
        name=ep.name,
        value=ep.value,
        distribution=dist.metadata["Name"] if dist else "?",
        version=dist.version if dist else "?",
    )


def _scan(group: str) -> tuple[dict[str, PluginInfo], dict[str, str]]:
    """All plugins of a group, and a message per name claimed by two distributions."""
    found: dict[str, PluginInfo] = {}
    conflicts: dict[str, str] = {}
    for ep in entry_points(group=group):
        info = _info(group, ep)
        seen = found.get(info.name)
        if seen is None:
            found[info.name] = info
        elif (seen.distribution, seen.value) != (info.distribution, info.value):
            conflicts[info.name] = (
                f"plugin name {info.name!r} in group {group} is registered by two "
                f"distributions: {seen.distribution} {seen.version} ({seen.value}) and "
                f"{info.distribution} {info.version} ({info.value}); uninstall one of them"
            )
        # The same distribution seen twice (e.g. an editable install also on
        # sys.path) is one registration, not a conflict.
    return found, conflicts


def available(group: str) -> dict[str, PluginInfo]:
    """Plugins installed for ``group``, by name, without importing them.

    A name registered by two distributions is left out (see :func:`conflicts`):
    it is an error on its own and does not hide the group's other plugins.

    Args:
        group: a group name, with or without the ``moths_framework.`` prefix.
    """
    found, clashes = _scan(_check_group(group))
    return {name: info for name, info in found.items() if name not in clashes}


def conflicts(group: str) -> dict[str, str]:
    """Names of ``group`` registered by two distributions -> a message naming both."""
    return _scan(_check_group(group))[1]


def load(group: str, name: str) -> object:
    """Import and return the object registered as ``name`` in ``group``.

    Raises:
        PluginConflictError: two distributions register ``name``.
        PluginError: the name is unknown (close matches are suggested) or the
            plugin fails to import (its error is included).
    """
    plugins, clashes = _scan(_check_group(group))
    if name in clashes:
        raise PluginConflictError(clashes[name])
    info = plugins.get(name)
    if info is None:
        close = difflib.get_close_matches(name, list(plugins), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(plugins)) or "none installed"
        raise PluginError(f"no plugin {name!r} in {_check_group(group)} (installed: {known}){hint}")
    try:
        return EntryPoint(info.name, info.value, info.group).load()
    except Exception as err:  # a plugin's import can fail in any way
        raise PluginError(
            f"plugin {name!r} ({info.value}) from {info.distribution} {info.version} "
            f"failed to load: {type(err).__name__}: {err}"
        ) from err


def status() -> list[PluginStatus]:
    """Import every installed plugin of every group and report each outcome.

    A name registered twice is reported (with the conflict as its error)
    instead of raised, and only that name: the group's other plugins are
    imported and reported on their own, so a listing always completes.
    """
    result: list[PluginStatus] = []
    for row in GROUPS:
        found, clashes = _scan(row.entry_point_group)
        for name, info in sorted(found.items()):
            if name in clashes:
                result.append(PluginStatus(info, clashes[name]))
                continue
            try:
                load(row.name, name)
                result.append(PluginStatus(info, None))
            except PluginError as err:
                result.append(PluginStatus(info, str(err)))
    return result


def load_all() -> list[PluginStatus]:
    """Import every installed plugin so YAML short ``class_path`` names resolve.

    Broken plugins and names registered by two distributions are logged by
    name with their error and skipped; the program goes on with the rest.
    """
    statuses = status()
    for s in statuses:
        if not s.ok:
            log.warning("skipping plugin %s in %s: %s", s.info.name, s.info.group, s.error)
    return statuses
