"""The way out of training: a checkpoint becomes an ONNX file, and an ONNX file a zoo entry.

- :mod:`~moths_framework.export.onnx`: ``moths-export --onnx`` (with
  :mod:`~.parity` and :mod:`~.int8`);
- :mod:`~moths_framework.export.zoo_entry` and :mod:`~.model_card`: ``moths-zoo add``,
  an exported model (and its checkpoint, as safetensors) into an index folder.

May import torch, ``model/`` (the checkpoint module and the classifier),
``inference/`` (the metadata contract) and ``zoo/``; never ``cli/``, ``train/``
or ``serve/``. ``zoo_entry`` imports torch only when it converts a checkpoint.
"""


class ExportError(RuntimeError):
    """The export failed or its parity check did not hold."""


def inputs_noun(source: str) -> str:
    """What a check ran on, for its report: ``source`` is ``"images"`` or ``"random"``."""
    return "images" if source == "images" else "random inputs"
