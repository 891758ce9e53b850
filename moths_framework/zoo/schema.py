"""The zoo index's JSON Schema (``index.schema.json``, shipped in this package) and its check.

Every index is checked against it when read, local or fetched, so the rest
of the zoo only ever sees well-formed entries: ids and versions that are
plain folder names, sha256 values that are hex digests, known file roles.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from typing import Any

from moths_framework.zoo.errors import ZooError

__all__ = ["SCHEMA_FILE", "check_name", "index_schema", "validate_index"]

SCHEMA_FILE = "index.schema.json"
_LONGEST_MESSAGE = 200


@functools.cache
def index_schema() -> dict[str, Any]:
    """The JSON Schema of ``index.json`` (schema 1)."""
    return json.loads((files(__package__) / SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(index_schema())


def validate_index(data: object, where: str) -> None:
    """Check a parsed index against the schema.

    Args:
        data: the parsed ``index.json``.
        where: the index's location, named in the error.

    Raises:
        ZooError: one line, ``zoo index WHERE: $.json.path: what is wrong``.
    """
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is None:
        return
    message = " ".join(error.message.split())
    if len(message) > _LONGEST_MESSAGE:
        message = message[: _LONGEST_MESSAGE - 3] + "..."
    raise ZooError(f"zoo index {where}: {error.json_path}: {message}")


def check_name(field: str, value: str) -> None:
    """Raise :class:`ZooError` unless ``value`` is a valid entry ``id`` or ``version``.

    Both become folder names in an index folder, so they are checked before
    anything is written.
    """
    rule = index_schema()["$defs"]["entry"]["properties"][field]
    if not re.search(rule["pattern"], value) or len(value) > rule["maxLength"]:
        raise ZooError(
            f"{field} {value!r} does not match {rule['pattern']} "
            f"(at most {rule['maxLength']} characters)"
        )
