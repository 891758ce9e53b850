"""The one decode path of training, validation and inference (moths_framework.scaled_decode).

The oracle throughout: Pillow decodes the file at full size, ``ImageOps.exif_transpose``
orients it, and torchvision crops and resizes it. A JPEG decoded at reduced scale (in the
DCT) is not bit-equal with that, so those comparisons allow a mean difference of a
fraction of a grey level on smooth photo-like images; a misplaced region costs more.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from helpers.onnx_models import export_model, metadata, tiny_net
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from torchvision import transforms as T
from torchvision.transforms import v2

from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.dataset import SampleDataset
from moths_framework.data.sources import ImageFolder, Sample
from moths_framework.data.transforms import FileTransform, eval_transform, train_transform
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.inference import OnnxClassifier
from moths_framework.preprocessing import Preprocessing
from moths_framework.scaled_decode import CropResize, decode_region, eval_region, reduction

P = Preprocessing((224, 224), 0.875)  # shorter side resized to 256
BILINEAR = Image.Resampling.BILINEAR
ORIENTATION = 0x0112


def photo_like(seed: int, size: tuple[int, int], fmt: str = "JPEG", exif: bytes = b"") -> bytes:
    """Smooth gradients and blurred discs with mild noise: a photo's spectrum."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [128 + 60 * np.sin(9 * (a * x / width + b * y / height) + 3 * c)
         for a, b, c in rng.uniform(-1, 1, (3, 3))],
        axis=-1,
    )  # fmt: skip
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(8, 80)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    pixels = (np.asarray(image) + rng.normal(0, 2, (height, width, 1))).clip(0, 255)
    out = io.BytesIO()
    options = {"quality": 92, "exif": exif} if fmt == "JPEG" else {}
    Image.fromarray(pixels.astype(np.uint8)).save(out, fmt, **options)
    return out.getvalue()


def oracle(data: bytes) -> Image.Image:
    """The file decoded at full size and oriented, as Pillow alone does it."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def grey_levels(a: Image.Image, b: Image.Image) -> np.ndarray:
    assert a.size == b.size
    return np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def centre_geometry(p: Preprocessing) -> T.Compose:
    return T.Compose([T.Resize(p.resize_size), T.CenterCrop(p.input_size)])


@pytest.mark.parametrize("size", [(1600, 1200), (1201, 897), (897, 1497)])
def test_centre_crop_of_a_reduced_jpeg_matches_the_full_decode(size: tuple[int, int]) -> None:
    data = photo_like(sum(size), size)
    width, height = size
    assert reduction(eval_region(P)(width, height).reduction_limit(width, height)) >= 2
    fast = decode_region(data, eval_region(P), BILINEAR)
    reference = centre_geometry(P)(oracle(data))
    difference = grey_levels(fast, reference)
    assert 0 < difference.mean() < 0.8  # reduced (not bit-equal), in the same place
    exact = decode_region(data, eval_region(P), BILINEAR, fast=False)
    assert grey_levels(exact, reference).max() == 0  # fast=False: torchvision's pixels


def test_random_resized_crop_uses_torchvisions_draw_and_matches_its_pixels() -> None:
    data = photo_like(3, (1201, 897))
    crop = T.RandomResizedCrop(160, scale=(0.3, 1.0))
    fast = FileTransform(crop)
    for seed in range(4):
        torch.manual_seed(seed)
        reference = crop(oracle(data))  # the same random numbers, drawn on the full image
        torch.manual_seed(seed)
        difference = grey_levels(fast(data), reference)
        assert difference.mean() < 0.8, seed
    torch.manual_seed(0)
    exact = FileTransform(crop, fast_decode=False)(data)
    torch.manual_seed(0)
    assert grey_levels(exact, crop(oracle(data))).max() == 0


@pytest.mark.parametrize("named", [{}, {"interpolation": "bicubic"}])
def test_torchvision_v2_transforms_name_their_interpolation(named: dict) -> None:
    """v2's transforms keep their interpolation as its name, ``'bilinear'`` by default
    (a config's listed ``torchvision.transforms.v2.RandomResizedCrop``): the decoder
    resamples as they do."""
    data = photo_like(5, (640, 480))
    crops = [
        v2.RandomResizedCrop(64, scale=(0.5, 1.0), **named),
        v2.Compose([v2.Resize(72, **named), v2.CenterCrop(64)]),
    ]
    for crop in crops:
        torch.manual_seed(0)
        exact = FileTransform(crop, fast_decode=False)(data)
        torch.manual_seed(0)
        assert grey_levels(exact, crop(oracle(data))).max() == 0, crop


def test_a_small_crop_of_a_large_photo_decodes_at_full_scale() -> None:
    """A crop of 1/40 of the photo's area has fewer pixels than 2x the output: no
    reduction, so its pixels are the full decode's, bit for bit."""
    data = photo_like(4, (1600, 1200))
    small = T.RandomResizedCrop(224, scale=(0.025, 0.03), ratio=(1.0, 1.0))
    chosen = []

    def record(width: int, height: int) -> CropResize:
        chosen.append(FileTransform(small).region(width, height))
        return chosen[-1]

    torch.manual_seed(0)
    image = decode_region(data, record, BILINEAR)
    torch.manual_seed(0)
    assert grey_levels(image, small(oracle(data))).max() == 0
    (region,) = chosen
    assert reduction(region.reduction_limit(1600, 1200)) == 1
    whole = CropResize((0, 0, 1600, 1200), (224, 224))  # the whole photo: 1/4 is plenty
    assert reduction(whole.reduction_limit(1600, 1200)) == 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_after_the_reduced_decode(orientation: int) -> None:
    """Sides that are no whole number of 8-pixel blocks: libjpeg's rounded-up last
    pixel column (row) moves to the left (top) under some orientations."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    data = photo_like(5, (1201, 897), exif=exif.tobytes())
    full = oracle(data)
    width, height = full.size
    box = (width // 9, height // 7, width // 9 + width * 3 // 4, height // 7 + height * 3 // 4)
    region = CropResize(box, (80, 64))  # an asymmetric box: a wrong flip shows
    assert reduction(region.reduction_limit(width, height)) == 8
    fast = decode_region(data, lambda w, h: region, BILINEAR)
    reference = full.crop(box).resize((80, 64), BILINEAR)
    assert grey_levels(fast, reference).mean() < 0.8
    centre = decode_region(data, eval_region(P), BILINEAR)
    assert grey_levels(centre, centre_geometry(P)(full)).mean() < 0.8


def test_a_png_decodes_at_full_size_whatever_fast_says() -> None:
    data = photo_like(6, (1000, 800), fmt="PNG")
    reference = centre_geometry(P)(oracle(data))
    assert grey_levels(decode_region(data, eval_region(P), BILINEAR), reference).max() == 0


def test_validation_and_inference_give_the_same_input(tmp_path) -> None:
    """One JPEG through the data module's validation dataset and through OnnxClassifier:
    the same numbers, whether decoded at reduced scale (the default) or not."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_like(7, (640, 480)))
    classifier = OnnxClassifier.from_file(export_model(tiny_net(), tmp_path / "m.onnx", metadata()))
    p = classifier.metadata.preprocessing
    width, height = 640, 480
    assert reduction(eval_region(p)(width, height).reduction_limit(width, height)) == 8
    sample = [Sample(path, "species")]
    for fast in (True, False):
        dataset = SampleDataset(sample, [[0]], eval_transform(p), fast_decode=fast)
        classifier.fast_decode = fast
        np.testing.assert_array_equal(dataset[0][0].numpy(), classifier.model_input(path))
    torch_reference = eval_transform(p)(oracle(path.read_bytes())).numpy()
    np.testing.assert_array_equal(classifier.model_input(path), torch_reference)  # exact
    classifier.fast_decode = True
    assert not np.array_equal(classifier.model_input(path), torch_reference)  # reduced


def test_the_data_modules_fast_decode_option_reaches_its_datasets(tmp_path) -> None:
    folder = tmp_path / "images" / "Aglais io"
    folder.mkdir(parents=True)
    data = photo_like(8, (900, 700))
    (folder / "a.jpg").write_bytes(data)
    csv = tmp_path / "hierarchy.csv"
    csv.write_text("species,group,family,genus\nAglais io,butterflies,Nymphalidae,Aglais\n")
    reference = eval_transform(Preprocessing())(oracle(data)).numpy()  # no trainer: 224 px
    for fast in (True, False):
        dm = MothsDataModule(ImageFolder(tmp_path / "images"), CsvHierarchy(csv), fast_decode=fast)
        dm.predict_phase = "all"
        image = dm.predict_dataloader().dataset[0][0].numpy()
        assert np.array_equal(image, reference) is not fast  # whole decode: exactly torchvision


@pytest.mark.parametrize("transform", [train_transform, eval_transform])
def test_a_file_transform_pickles_for_spawned_loader_workers(transform) -> None:
    """macOS and Windows start DataLoader workers by spawning: the dataset is pickled."""
    data = photo_like(9, (640, 480))
    original = FileTransform(transform(Preprocessing((64, 64))))
    copy = pickle.loads(pickle.dumps(original))
    torch.manual_seed(0)
    expected = original(data)
    torch.manual_seed(0)
    assert torch.equal(copy(data), expected)
