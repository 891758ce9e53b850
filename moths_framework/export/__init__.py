"""Export a trained checkpoint to ONNX (``moths-export --onnx``)."""


class ExportError(RuntimeError):
    """The export failed or its parity check did not hold."""
