"""The model side: backbone interface, multi-head classifier, LightningModule, checkpoints.

- :mod:`~moths_framework.model.checkpoint` (+ :mod:`~.checkpoint_meta`): the one
  place that reads and writes ``.ckpt`` and ``.safetensors`` files and their
  typed :class:`~.checkpoint_meta.CheckpointMeta`; ``read_weights`` also takes
  ``zoo:ID``. :mod:`~.trust` says whether a checkpoint may run code.
- :mod:`~moths_framework.model.lightning`: the LightningModule; it imports the
  checkpoint module (never the reverse) and :mod:`~.warm_start`, which works
  on ``(state_dict, CheckpointMeta)``.
- :mod:`~moths_framework.model.rebuild`: a trained classifier from its checkpoint alone.

May import torch, Lightning, ``data/``, ``inference/`` (the metadata contract)
and ``zoo/`` (to resolve ``zoo:ID``); never ``export/``, ``calibrate/``,
``train/``, ``cli/`` or ``serve/``.
"""
