"""JSON response bodies rendered by orjson: numpy arrays as they are, no pydantic model per float.

``/process`` answers every score and logit of every rank, about 7,400 numbers
an image for a 2,700-species model. Building a pydantic model of each
classification and rendering its lists of Python floats cost the event loop
more than everything else a request does; orjson renders a float32 array
directly (``OPT_SERIALIZE_NUMPY``) as the shortest decimal that reads back as
the same float32, so a client that parses it (Antenna recomputes from the
logits) gets every float32 bit back, in half the bytes of ``float64`` text.

The bodies are still the wire objects of :mod:`.schemas_ami`, field for field;
the OpenAPI schema comes from those models, and the tests parse real
responses with them.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["FastJSONResponse", "render"]

# UTC as "Z", as pydantic writes it; a NaN or infinity becomes null, as in pydantic's JSON.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def render(content: Any) -> bytes:
    """``content`` (dicts, lists, str, numbers, datetimes, numpy arrays) as JSON bytes."""
    return orjson.dumps(content, option=_OPTIONS)


class FastJSONResponse(Response):
    """A JSON response rendered by :func:`render`; the content may also be bytes already
    rendered (a body that never changes, rendered once)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else render(content)
