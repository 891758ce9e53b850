#!/usr/bin/env bash
# The whole flow on test_data, one command per step. Called by `make demo`.
set -euo pipefail
BIN=$1
OUT=$2
export PATH="$BIN:$PATH" WANDB_MODE=offline

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

rm -rf "$OUT"
mkdir -p "$OUT"
step "installed plugins" moths-plugins
step "combine the sources, hide broken files" \
  moths-prepare test_data/ test_data/source_a test_data/source_b --no-progress
step "label hierarchy vs. the prepared data" \
  moths-hierarchy test_data/hierarchy.csv --data test_data/image_folder --min-samples 5
step "train (configs/dev.yaml: CPU, small backbone from scratch)" \
  moths-fit --config configs/dev.yaml --trainer.default_root_dir "$OUT/run" \
  --trainer.enable_progress_bar false --trainer.enable_model_summary false
step "calibrate on the validation split: temperatures, thresholds, novelty detector" \
  moths-calibrate --ckpt "$OUT/run/best.ckpt" --trainer.enable_progress_bar false
step "export to ONNX (labels, hierarchy, preprocessing, calibration inside; parity-checked)" \
  moths-export --onnx --ckpt "$OUT/run/calibrated.ckpt" --output "$OUT/model.onnx"
step "classify images with ONNX Runtime (no PyTorch), one of them broken" \
  moths-infer --model "$OUT/model.onnx" --output "$OUT/predictions.csv" --no-progress \
  "test_data/source_a/Aglais io/1.jpg" "test_data/source_b/Noctua comes/2.jpg" \
  "test_data/source_b/Pieris rapae/3.png" "test_data/source_a/Pammene aurana/31.jpg"
printf '\n%s:\n' "$OUT/predictions.csv"
cut -d, -f1-3,10-11,14-16 "$OUT/predictions.csv" | column -s, -t
step "predict the test split: per-image predictions, logits and features" \
  moths-predict --config "$OUT/run/config.yaml" --ckpt_path "$OUT/run/best.ckpt" \
  --trainer.enable_progress_bar false
step "evaluate the predictions: metrics.json, confusion matrices, report.html" \
  moths-evaluate "$OUT/run/predictions/test"
step "predict the test split again with the calibrated checkpoint" \
  moths-predict --config "$OUT/run/config.yaml" --ckpt_path "$OUT/run/calibrated.ckpt" \
  --output "$OUT/run/predictions/test-calibrated" --trainer.enable_progress_bar false
step "before and after calibration, on the same images" \
  moths-evaluate "$OUT/run/predictions/test" "$OUT/run/predictions/test-calibrated"
step "trap frames: find the moths (zoo:nl-moths-demo-detector), classify each crop with the model above" \
  moths-infer --detector zoo:nl-moths-demo-detector --model "$OUT/model.onnx" \
  --output "$OUT/detections.csv" --crops "$OUT/crops" --no-progress test_data/frames/images
step "moths per answer on those frames, beside the true counts (test_data/frames/instances.json)" \
  python scripts/species_counts.py "$OUT/detections.csv" --truth test_data/frames/instances.json
