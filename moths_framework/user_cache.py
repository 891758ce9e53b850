"""The user's cache folder for moths-framework: ``$MOTHS_CACHE``, else the platform's.

The zoo keeps downloaded files under ``zoo/`` (:mod:`moths_framework.zoo.cache`), the
LightningCLI commands their help texts under ``help/``
(:mod:`moths_framework.cli.help_cache`). On Linux the platform's folder is
``$XDG_CACHE_HOME/moths-framework``, ``~/.cache/moths-framework`` when that is unset.
No torch; platformdirs comes with the ``infer`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "MOTHS_CACHE"


def cache_root() -> Path:
    """``$MOTHS_CACHE``, else the platform's user cache folder for moths-framework."""
    given = os.environ.get(CACHE_ENV)
    return (
        Path(given).expanduser() if given else Path(platformdirs.user_cache_dir("moths-framework"))
    )
