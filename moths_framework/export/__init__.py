"""Export a trained checkpoint to ONNX (``moths-export --onnx``)."""


class ExportError(RuntimeError):
    """The export failed or its parity check did not hold."""


def inputs_noun(source: str) -> str:
    """What a check ran on, for its report: ``source`` is ``"images"`` or ``"random"``."""
    return "images" if source == "images" else "random inputs"
