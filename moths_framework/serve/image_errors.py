"""What a client is told when one image fails, and what the server's log gets.

A client learns what it sent wrong: a refused or malformed URL, an uploaded
file that is no image or too large. What depends on the network or on the
model (connection refused, an HTTP status, a timeout, a fetched file that is
not an image, a model error) is one generic message with a reference; the
detail goes to the log under the same reference. Otherwise the service would
tell anyone who can call it what answers where on its internal network.
"""

from __future__ import annotations

import logging
import secrets

from moths_framework.images import ImageDecodeError
from moths_framework.serve.fetch import FetchError, RefusedURL

__all__ = ["ImageTooLarge", "ModelFailed", "per_image_error"]

logger = logging.getLogger("moths_framework.serve")

FETCH_FAILED = "cannot fetch or decode the image at this URL"
MODEL_FAILED = "the model failed on this image"
FAILED = "cannot process this image"


class ImageTooLarge(ValueError):
    """An uploaded image file over ``--max-image-mb``."""


class ModelFailed(RuntimeError):
    """The model raised on this image (alone: its batch was retried image by image)."""


def per_image_error(image_id: str, url: str | None, error: Exception) -> str:
    """The client's message for ``error`` on one image; logs the detail if it is withheld."""
    if isinstance(error, RefusedURL):
        return f"URL refused: {error}"
    if url is None and isinstance(error, ImageDecodeError):
        detail = f" ({error.detail})" if error.detail else ""
        return f"cannot decode image: {error.reason}{detail}"
    if url is None and isinstance(error, ImageTooLarge):
        return str(error)
    ref = secrets.token_hex(4)
    if isinstance(error, ModelFailed):
        public, level = MODEL_FAILED, logging.WARNING
    else:
        public, level = (FETCH_FAILED if url is not None else FAILED), logging.INFO
    if not isinstance(error, (FetchError, ImageDecodeError, ModelFailed)):
        level = logging.WARNING  # not one of the expected failures
    where = f" <{url}>" if url is not None else ""
    logger.log(level, "image %r%s: %s [ref %s]", image_id, where, _detail(error), ref)
    return f"{public} (ref {ref})"


def _detail(error: Exception) -> str:
    if isinstance(error, ImageDecodeError):
        detail = f" ({error.detail})" if error.detail else ""
        return f"not decoded: {error.reason}{detail}"
    if isinstance(error, (FetchError, ModelFailed)):
        return str(error)
    return f"{type(error).__name__}: {error}"
