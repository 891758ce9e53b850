"""Classifier inputs cut straight from a frame (``cut_centre_crop``, ``predict_crops``).

The pipeline classifies a box of a frame without resizing the whole crop first. The
oracle: Pillow cuts the crop from the frame and torchvision's ``Resize`` +
``CenterCrop`` (the evaluation transform's geometry) make the model input of it. A squarish
box gives exactly those pixels. Along a sliver's long side Pillow takes a resize box as
32-bit floats, so where the exact value is a tie between two grey levels a pixel may
fall on the other side (under 1% of them on this noise); a region a pixel off, a filter
reading past the box's edge, or the two resize passes in the other order than Pillow's
own resize costs far more.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.onnx_models import export_model, metadata, tiny_net
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from moths_framework.inference import OnnxClassifier
from moths_framework.inference.frame_crops import cut_centre_crop
from moths_framework.scaled_decode import RESAMPLING, centre_crop

FRAME = (640, 480)
BOXES = [
    (300, 20, 312, 470),  # a sliver: shorter side enlarged 20x, the longer cut to the centre
    (10, 200, 630, 215),  # a wide sliver
    (0, 0, 1, 480),  # one pixel wide, at the frame's edge
    (200, 100, 230, 140),  # small: enlarged
    (20, 30, 620, 470),  # large: shrunk
    (150, 0, 450, 480),  # taller than wide and shrunk
    (100, 0, 180, 480),  # its height shrunk by over twice its width: Pillow 13 goes rows first
    (0, 300, 640, 480),  # wider than tall and shrunk
    (400, 400, 402, 405),  # tiny: the filter's reach meets the box's edge
]


@pytest.fixture(scope="module")
def frame() -> Image.Image:
    """Noise over gradients: every pixel differs from its neighbours, so a sample taken
    a fraction of a pixel off, or a pixel read beyond a box, shows."""
    rng = np.random.default_rng(7)
    width, height = FRAME
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], axis=-1)
    pixels = (0.5 * base + rng.integers(0, 128, (height, width, 3))).clip(0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def reference(
    frame: Image.Image,
    box: tuple[int, int, int, int],
    shorter: int,
    crop: tuple[int, int],
    mode: str,
) -> np.ndarray:
    interpolation = InterpolationMode(mode)
    geometry = T.Compose([T.Resize(shorter, interpolation), T.CenterCrop(crop)])
    return np.asarray(geometry(frame.crop(box)), dtype=np.int16)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "lanczos", "hamming", "box", "nearest"])
@pytest.mark.parametrize(
    "shorter",
    [73, 64, 40],  # crop_pct 0.875; the crop as long as the resized side; padding
)
@pytest.mark.parametrize("box", BOXES)
def test_a_box_cut_straight_from_the_frame_is_the_crop_resized(frame, box, shorter, mode):
    crop = (64, 48)  # (height, width)
    region = centre_crop(box[2] - box[0], box[3] - box[1], shorter, crop)
    cut = cut_centre_crop(frame, box, region, RESAMPLING[mode])
    differences = np.abs(
        np.asarray(cut, dtype=np.int16) - reference(frame, box, shorter, crop, mode)
    )
    assert differences.max() <= 2
    assert (differences > 0).mean() < 0.01
    width, height = region.resized
    if width <= 2 * crop[1] and height <= 2 * crop[0]:  # squarish: resized whole, both ways
        assert differences.max() == 0


def test_the_classifier_on_boxes_of_a_frame_says_what_it_says_of_their_crops(frame, tmp_path):
    classifier = OnnxClassifier.from_file(export_model(tiny_net(), tmp_path / "m.onnx", metadata()))
    found = classifier.predict_crops(frame, BOXES, top_k=3, batch_size=3)
    expected = classifier.predict([frame.crop(box) for box in BOXES], top_k=3, batch_size=3)
    assert [f.source for f in found] == [f"#{i}" for i in range(1, len(BOXES) + 1)]
    for got, want in zip(found, expected, strict=True):
        for rank, ranked in want.top_k.items():
            assert [name for name, _ in got.top_k[rank]] == [name for name, _ in ranked]
            assert [v for _, v in got.top_k[rank]] == pytest.approx(
                [v for _, v in ranked], abs=1e-4
            )
    assert classifier.predict_crops(frame, []) == []
