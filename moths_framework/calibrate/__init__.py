"""``moths-calibrate``: probabilities that mean what they say, and a novel-species flag.

On the checkpoint's validation images (or a dedicated calibration source):

1. :mod:`.tau`: optional tau-normalisation of the species head, baked into its weights;
2. :mod:`.temperature`: one softmax temperature per rank (NLL, LBFGS on log T);
3. :mod:`.rollup`: the roll-up method with the best accuracy at equal coverage;
4. :mod:`.thresholds`: per-rank thresholds that reach a target precision;
5. :mod:`.novelty_fit`: a novel-species detector on the features, threshold at 5% FPR.

:mod:`.calibration` runs the steps on arrays; :mod:`.run` gets the arrays from a
checkpoint and writes the calibrated checkpoint, which ``moths-export`` carries
into the ONNX metadata (``moths.temperature``, ``moths.calibration``, ``moths.novelty``).
:mod:`.settings` reads them back from a checkpoint the way inference reads them from
the ONNX file, so ``moths-predict`` answers as ``moths-infer`` does.

May import ``model``, ``data``, ``train``, ``inference``, ``evaluate`` and the core
modules, and torch; never ``export``, ``serve``, ``sweep`` or ``cli``.
"""
