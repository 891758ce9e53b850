"""Training: the LightningCLI every training-side command builds (``MothsCLI``), indexed
list overrides (``overrides``), the unfreeze policies (``unfreeze``) and ``moths-fit
--tune``'s batch-size and learning-rate search (``lr_batch_finder``; not to be confused
with fine-tuning from a model, ``model.warm_start``, nor with ``moths-sweep``'s
hyper-parameter search).

May import the library below it (``data``, ``model``, ``hierarchy``,
``output_folders``, ``zoo.transport``) and Lightning; never ``cli`` (the commands sit
above it) nor ``sweep`` (which builds its trials from here).
"""
