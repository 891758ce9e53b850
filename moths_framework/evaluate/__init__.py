"""Per-sample prediction folders, their metrics and report; imports no torch.

- :mod:`~moths_framework.evaluate.folder_writer`: write a prediction folder
  (``predictions.csv``, ``outputs.npz``, ``hierarchy.json``);
  :mod:`~moths_framework.evaluate.folder_reader`: read it back (``PredictionFolder.load``).
  :mod:`~moths_framework.evaluate.answers`: the rolled-up answer of many images, as
  ``moths-infer`` gives it (both writer and evaluation use it).
- :mod:`~moths_framework.evaluate.evaluation`: every number of ``metrics.json``
  (:mod:`~.metrics` per rank and class, :mod:`~.reliability`, :mod:`~.other_class`,
  :mod:`~.novelty_auroc` for species the model never saw).
- :mod:`~moths_framework.evaluate.report`: ``report.html`` and ``confusion/*.csv``.
- :mod:`~moths_framework.evaluate.compare`: two folders on the same images.
- A detector's folder: :mod:`~.detection_folder` (write and read it),
  :mod:`~.detection_evaluation` (:mod:`~.coco_map` for mAP, :mod:`~.box_matching`
  for precision, recall and counts at the score threshold), :mod:`~.detection_outputs`
  and :mod:`~.detection_report` (``counts.csv``, ``report.html`` with
  :mod:`~.frame_drawings`), :mod:`~.detection_compare`. faster-coco-eval, no scikit-learn.

Import from the submodules: this package module stays light so ``moths-predict``
can use the writer without loading scikit-learn or matplotlib.

Imports no torch or Lightning, and nothing of ``model/``, ``data/``, ``export/``,
``train/`` or ``cli/``: numpy, scikit-learn, matplotlib, :mod:`moths_framework.inference`
(the roll-up and novelty rules moths-infer uses), faster-coco-eval, Pillow and the
torch-free core.
"""
