"""Which URLs the zoo reads: https, ``file://`` and paths; plain http only when allowed.

An index carries the sha256 every file is checked against, so whoever can
change the index can change the model. Over plain ``http://`` anyone on the
network path can, so an http index or file is refused unless the user accepts
that: ``--allow-insecure-http`` (the commands wrap their work in
:func:`allowing_insecure_http`) or ``MOTHS_ZOO_INSECURE=1``. Loopback addresses
are no exception: one rule, easy to state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlparse

from moths_framework.zoo.errors import ZooInsecureError

__all__ = [
    "INSECURE_ENV",
    "INSECURE_FLAG",
    "INSECURE_HELP",
    "allowing_insecure_http",
    "check_transport",
    "insecure_http_allowed",
]

INSECURE_ENV = "MOTHS_ZOO_INSECURE"
INSECURE_FLAG = "--allow-insecure-http"
INSECURE_HELP = (
    "read zoo indexes and files over plain http:// (anyone on the network path can change "
    f"them and their sha256); also {INSECURE_ENV}=1"
)

_allowed: ContextVar[bool] = ContextVar("moths_zoo_insecure_http", default=False)


def insecure_http_allowed() -> bool:
    """True inside :func:`allowing_insecure_http` or with ``MOTHS_ZOO_INSECURE`` 1/true/yes."""
    from_env = os.environ.get(INSECURE_ENV, "").strip().lower() in {"1", "true", "yes"}
    return from_env or _allowed.get()


@contextmanager
def allowing_insecure_http(allow: bool = True) -> Iterator[None]:
    """Within the block, plain http:// zoo indexes and files are read when ``allow`` is."""
    token = _allowed.set(allow)
    try:
        yield
    finally:
        _allowed.reset(token)


def check_transport(url: str, what: str) -> None:
    """Refuse a plain ``http://`` ``url`` unless allowed; https, ``file://`` and paths pass.

    Raises:
        ZooInsecureError: one line naming ``what``, the url and the flag.
    """
    if urlparse(url).scheme == "http" and not insecure_http_allowed():
        raise ZooInsecureError(
            f"{what} {url} is plain http://: anyone on the network path could change it and "
            f"its sha256; use https://, or pass {INSECURE_FLAG} (or set {INSECURE_ENV}=1) "
            "to accept that"
        )
