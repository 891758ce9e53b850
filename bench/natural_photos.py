"""Not a benchmark: natural photos for the benchmarks, from files scikit-learn and
scikit-image install (nothing is downloaded), and more views of them by crops and flips."""

from __future__ import annotations

import numpy as np
from PIL import Image

# scikit-image's sample photos that ship inside its wheel (the others are fetched on
# first use); drawings, text, binary masks and micrographs left out.
SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field",
    "grass", "gravel", "brick", "retina", "clock", "immunohistochemistry",
)  # fmt: skip
# Per photo: the whole of it, then crops of 3/4 of each side at its four corners and
# centre; each also mirrored.
CROP = 0.75
POSITIONS = ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1))


def natural_photos() -> dict[str, Image.Image]:
    """The sample photos of scikit-learn and scikit-image, RGB, by name."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    arrays = {
        name.rsplit("/", 1)[-1].removesuffix(".jpg"): image
        for name, image in zip(samples.filenames, samples.images, strict=True)
    }
    arrays |= {name: getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS}
    left, right, _ = skimage.data.stereo_motorcycle()
    arrays |= {"motorcycle_left": left, "motorcycle_right": right}
    return {name: Image.fromarray(np.asarray(a)).convert("RGB") for name, a in arrays.items()}


def views(photos: dict[str, Image.Image]) -> list[tuple[str, Image.Image]]:
    """Twelve views of each photo: whole, five crops, each also mirrored; named
    ``photo/whole``, ``photo/crop1``, ..., ``photo/whole/flip``."""
    out = []
    for name, photo in photos.items():
        width, height = photo.size
        w, h = round(width * CROP), round(height * CROP)
        crops = {"whole": photo}
        for i, (x, y) in enumerate(POSITIONS, 1):
            left, top = round((width - w) * x), round((height - h) * y)
            crops[f"crop{i}"] = photo.crop((left, top, left + w, top + h))
        for view, image in crops.items():
            out.append((f"{name}/{view}", image))
            out.append((f"{name}/{view}/flip", image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return out


def random_crops(photos: dict[str, Image.Image], count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` other views: a random crop of 40-90% of each side of a random photo,
    mirrored half the time (int8 calibration on images the measured views are not)."""
    rng = np.random.default_rng(seed)
    names = sorted(photos)
    out = []
    for _ in range(count):
        photo = photos[names[rng.integers(len(names))]]
        width, height = photo.size
        w, h = (round(side * rng.uniform(0.4, 0.9)) for side in (width, height))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = photo.crop((left, top, left + w, top + h))
        out.append(
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image
        )
    return out
