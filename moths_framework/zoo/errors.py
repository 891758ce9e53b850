"""Errors of the model zoo; each message is one line naming the thing and what to do."""

from __future__ import annotations

__all__ = ["ZooChecksumError", "ZooError", "ZooInsecureError", "ZooOfflineError"]


class ZooError(ValueError):
    """An index is missing or invalid, a model is unknown, or a file cannot be fetched."""


class ZooChecksumError(ZooError):
    """A file's sha256 differs from the index; nothing was cached."""


class ZooOfflineError(ZooError):
    """``MOTHS_OFFLINE=1`` and a file that needs the network is not in the cache."""


class ZooInsecureError(ZooError):
    """An index or file is plain ``http://`` and insecure http was not allowed."""
