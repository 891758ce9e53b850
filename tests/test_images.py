"""moths_framework.images: the one decoder (open_rgb) and the validator (check_image)."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers.image_samples import BROKEN, VALID, jpeg, rotated_jpeg
from PIL import Image, ImageFile

from moths_framework.images import ImageCheck, ImageDecodeError, check_image, open_rgb


@pytest.mark.parametrize("name", sorted(VALID))
def test_open_rgb_decodes_every_kept_format_to_rgb(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(VALID[name])
    image = open_rgb(path)
    assert image.mode == "RGB"
    assert image.size == ((48, 64) if name == "rotated.jpg" else (64, 48))
    # From a path, from bytes and from a str path: one decoder, one result.
    assert np.array_equal(np.asarray(image), np.asarray(open_rgb(VALID[name])))
    assert np.array_equal(np.asarray(image), np.asarray(open_rgb(str(path))))


@pytest.mark.parametrize("name", sorted(VALID))
def test_pil_image_in_memory_decodes_as_its_file(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(VALID[name])
    opened = Image.open(path)
    mode, size = opened.mode, opened.size
    image = open_rgb(opened)
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(open_rgb(path)))
    assert (opened.mode, opened.size) == (mode, size)  # the caller's image is not changed


def test_pil_image_is_never_drafted():
    # Drafting would shrink the caller's image object; it decodes at full size.
    opened = Image.open(io.BytesIO(jpeg(size=(640, 480))))
    assert open_rgb(opened, draft_size=(1, 1)).size == (640, 480)
    assert opened.size == (640, 480)


def test_broken_pil_image_is_an_image_decode_error_naming_its_file(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(BROKEN["truncated.jpg"][1])
    with pytest.raises(ImageDecodeError, match="truncated") as caught:
        open_rgb(Image.open(path))
    assert caught.value.source == str(path)


def test_sixteen_bit_is_scaled_not_clipped():
    image = np.asarray(open_rgb(VALID["sixteen-bit.png"]))
    # The ramp runs 0..65535; Pillow's own convert("RGB") would clip it to mostly 255.
    assert image.min() == 0 and image.max() == 255
    assert 100 < image.mean() < 155


def test_transparent_pixels_become_white():
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buffer = io.BytesIO()
    transparent.save(buffer, "PNG")
    assert open_rgb(buffer.getvalue()).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_colours_survive():
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, "JPEG", quality=95)
    red, green, blue = open_rgb(buffer.getvalue()).getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_open_rgb_raises_image_decode_error_naming_file_and_reason(name, tmp_path):
    reason, data = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError) as caught:
        open_rgb(path)
    assert caught.value.reason == reason
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_open_rgb_missing_file_is_an_image_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="unreadable"):
        open_rgb(tmp_path / "gone.jpg")


def test_image_decode_error_survives_pickling():
    # Worker processes send errors back pickled; the reason must survive.
    error = pickle.loads(pickle.dumps(ImageDecodeError("a.jpg", "truncated", "cut")))
    assert (error.source, error.reason, str(error)) == (
        "a.jpg",
        "truncated",
        "cannot decode image a.jpg: truncated (cut)",
    )


# The format each of helpers.image_samples.VALID was written in (its ``Image.save``).
WRITTEN_AS = {
    "rgb.jpg": "JPEG", "upper.JPG": "JPEG", "progressive.jpeg": "JPEG", "rotated.jpg": "JPEG",
    "grayscale.png": "PNG", "grayscale.jpg": "JPEG", "rgba.png": "PNG", "la.png": "PNG",
    "palette.png": "PNG", "palette-transparent.png": "PNG", "cmyk.jpg": "JPEG",
    "sixteen-bit.png": "PNG", "sixteen-bit.tif": "TIFF", "lossy.webp": "WEBP",
    "animated.gif": "GIF", "bitmap.bmp": "BMP",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VALID))
def test_check_image_accepts_valid_files_with_full_size(name):
    assert WRITTEN_AS.keys() == VALID.keys()
    check = check_image(VALID[name], name)
    expected = (48, 64) if name == "rotated.jpg" else (64, 48)
    assert check == ImageCheck(True, None, *expected, WRITTEN_AS[name])


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_image_rejects_broken_files_with_reason(name):
    reason, data = BROKEN[name]
    assert check_image(data, name) == ImageCheck(False, reason, 0, 0, None)


def test_jpeg_draft_decodes_smaller_but_still_reads_all_data():
    data = jpeg(size=(640, 480))
    # Draft mode really is on: 1/8 scale for the smallest request...
    assert open_rgb(data, draft_size=(1, 1)).size == (80, 60)
    # ...and the largest scale that still covers the requested size.
    assert open_rgb(data, draft_size=(300, 200)).size == (320, 240)
    assert open_rgb(data, draft_size=(400, 200)).size == (640, 480)
    # Still every cut into the entropy-coded data, down to its last byte (the file
    # then ends ...XX FF D9: data, end-of-image marker), is caught at 1/8 scale.
    for cut in (len(data) // 4, len(data) // 2, len(data) * 9 // 10, len(data) - 3):
        assert check_image(data[:cut], "cut.jpg").reason == "truncated"
        for draft_size in (None, (1, 1)):  # draft and full decode agree
            with pytest.raises(ImageDecodeError, match="truncated"):
                open_rgb(data[:cut], draft_size=draft_size)


def test_draft_size_follows_exif_orientation():
    # Shown as 48x64: asking for 24 wide x 32 high allows half scale.
    assert open_rgb(rotated_jpeg(), draft_size=(24, 32)).size == (24, 32)


def test_truncated_images_are_caught_even_if_pillow_was_told_to_load_them(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    reason, data = BROKEN["truncated.jpg"]
    assert check_image(data, "cut.jpg").reason == reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_open_rgb_changes_no_process_wide_setting(monkeypatch):
    # Inference decodes in threads: open_rgb must not flip globals, even briefly.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    filters = list(warnings.filters)
    open_rgb(VALID["rgb.jpg"])
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        open_rgb(BROKEN["bomb-warning.png"][1])
    assert warnings.filters == filters and ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_images_and_prepare_import_no_torch():
    code = (
        "import sys, moths_framework.images, moths_framework.data.prepare; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
