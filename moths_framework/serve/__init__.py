"""``moths-serve``: exported models over HTTP, as an AMI processing service and a plain ``/v1`` API.

>>> from moths_framework.serve import create_app, load_served_model, ServeOptions
>>> app = create_app([load_served_model("m.onnx")], ServeOptions())  # doctest: +SKIP

Run it with ``uvicorn`` (``moths-serve`` does). Imports no torch.
"""

from moths_framework.serve.app import create_app
from moths_framework.serve.engine import ServeOptions
from moths_framework.serve.served import ServedModel, load_served_model

__all__ = ["ServeOptions", "ServedModel", "create_app", "load_served_model"]
