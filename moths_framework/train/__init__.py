"""Training: the LightningCLI every training-side command builds (``MothsCLI``), indexed
list overrides, the unfreeze policies and ``--tune``.

May import the library below it (``data``, ``model``, ``hierarchy``,
``output_folders``, ``zoo.transport``) and Lightning; never ``cli`` (the commands sit
above it) nor ``sweep`` (which builds its trials from here).
"""
