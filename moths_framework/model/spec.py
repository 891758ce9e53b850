"""Plugins that record their constructor's arguments, so a checkpoint can rebuild them."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["RecordsInitArgs"]


class RecordsInitArgs:
    """Records the arguments each instance was constructed with (``spec``'s ``init_args``)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:  # copy/pickle call __new__ without the arguments
            return obj
        bound.apply_defaults()
        # object.__setattr__: an nn.Module refuses attributes before its __init__ ran
        object.__setattr__(obj, "_init_args", dict(list(bound.arguments.items())[1:]))
        return obj

    def _spec(self, weight_sources: Mapping[str, Any]) -> dict[str, Any]:
        """``class_path`` and ``init_args``, each weight-source argument replaced by its
        value in ``weight_sources`` (the weights travel in the checkpoint)."""
        cls = type(self)
        init_args = dict(getattr(self, "_init_args", {}))
        for name, value in weight_sources.items():
            if name in init_args:
                init_args[name] = value
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
