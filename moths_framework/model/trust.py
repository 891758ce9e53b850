"""Whether a checkpoint may run code: ``--trust-checkpoint`` or ``MOTHS_TRUST_CHECKPOINT=1``.

A Lightning ``.ckpt`` is a pickle, and its ``moths.backbone.class_path`` names a
class the loader imports and calls: either can run whatever its author wrote.
By default a checkpoint is read with ``torch.load(weights_only=True)`` (tensors
and plain data only; the project's own checkpoints need nothing more) and its
backbone must be an installed backbone plugin or a ``Backbone`` subclass.
Trusting lifts both limits, for checkpoints you made or whose author you trust.

It is never the default, and no config file can turn it on: only the command
line flag (:func:`trusting_checkpoints` around the command) or the environment.
No torch here: the commands import it before torch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from moths_framework import plugins
from moths_framework.model.checkpoint_meta import CheckpointError

__all__ = [
    "TRUST_ENV",
    "checked_plugin_class",
    "TRUST_FLAG",
    "TRUST_HINT",
    "checkpoints_trusted",
    "lightning_load_options",
    "trusting_checkpoints",
]

TRUST_FLAG = "--trust-checkpoint"
TRUST_ENV = "MOTHS_TRUST_CHECKPOINT"
TRUST_HINT = (
    f"pass {TRUST_FLAG} (or set {TRUST_ENV}=1) only if you trust whoever made the checkpoint"
)
TRUST_HELP = (
    "load a .ckpt as a full pickle and build any backbone class it names, which can run "
    f"code of whoever made it: only for checkpoints you made or trust (also {TRUST_ENV}=1)"
)

_trusted: ContextVar[bool] = ContextVar("moths_trust_checkpoint", default=False)


def checkpoints_trusted() -> bool:
    """True inside :func:`trusting_checkpoints` or with ``MOTHS_TRUST_CHECKPOINT`` 1/true/yes."""
    from_env = os.environ.get(TRUST_ENV, "").strip().lower() in {"1", "true", "yes"}
    return from_env or _trusted.get()


@contextmanager
def trusting_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within the block, checkpoints are trusted when ``trust`` is (the flag's value)."""
    token = _trusted.set(trust)
    try:
        yield
    finally:
        _trusted.reset(token)


def lightning_load_options(entry_point: Callable[..., Any]) -> dict[str, bool]:
    """``weights_only`` for Lightning's own load of ``trainer.predict(ckpt_path=...)`` and the like.

    Lightning leaves it to torch's default (``weights_only=True`` since torch
    2.6), which would refuse a trusted checkpoint; an older Lightning has no
    such parameter (then ``{}``).
    """
    if "weights_only" not in inspect.signature(entry_point).parameters:
        return {}
    return {"weights_only": not checkpoints_trusted()}


def checked_plugin_class(class_path: object, group: str, role: str, install_hint: str) -> type:
    """The class a checkpoint's spec names for plugin group ``group``, if it may be built.

    Untrusted, it must be a registered plugin of the group or a subclass of the
    group's base class: calling any other class or function with the
    checkpoint's arguments (``subprocess.Popen``, ``os.system``) would run
    whatever command the checkpoint's author chose.

    Args:
        class_path: the spec's ``class_path``.
        group: the plugin group, e.g. ``backbones``.
        role: what the class is, in messages, e.g. ``backbone``.
        install_hint: how to get a missing plugin, e.g. ``pip install moths-plugin-timm``.

    Raises:
        CheckpointError: not a dotted class path, not installed, or not allowed.
    """
    if not isinstance(class_path, str) or not re.fullmatch(r"\w+(\.\w+)+", class_path):
        raise CheckpointError(f"the checkpoint's {role} class_path {class_path!r} is not a class")
    plugins.load_all()
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(
            f"the checkpoint's {role} {class_path} is not installed: {err} "
            f"(install its plugin, e.g. {install_hint})"
        ) from err
    row = plugins.plugin_group(group)
    base = row.base_class()
    registered = {info.class_path for info in plugins.available(group).values()}
    if class_path in registered or (isinstance(cls, type) and issubclass(cls, base)):
        return cls
    if checkpoints_trusted():
        return cls
    raise CheckpointError(
        f"the checkpoint's {role} {class_path} is not a {role} plugin nor a {base.__name__} "
        f"subclass; building it could run its author's code: {TRUST_HINT}"
    )
