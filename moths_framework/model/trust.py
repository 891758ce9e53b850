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

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "TRUST_ENV",
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
