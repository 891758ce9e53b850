"""moths_framework.images on untrusted bytes: only the project's formats, and a pixel cap."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers.image_samples import encode, noise, png_header_only
from PIL import EpsImagePlugin, Image

from moths_framework import images
from moths_framework.data.sources import IMAGE_SUFFIXES
from moths_framework.images import ImageDecodeError, check_image, open_rgb

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n"


def test_image_formats_are_the_formats_of_the_accepted_suffixes() -> None:
    Image.init()
    by_suffix = {Image.registered_extensions()[suffix] for suffix in IMAGE_SUFFIXES}
    assert set(images.IMAGE_FORMATS) == by_suffix


@pytest.mark.parametrize("fmt", ["PCX", "ICO", "TGA", "PPM", "SGI", "DDS"])
def test_formats_outside_the_list_are_not_images(fmt: str) -> None:
    data = encode(noise(size=(16, 16)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow alone would decode it
    with pytest.raises(ImageDecodeError) as caught:
        open_rgb(data)
    assert caught.value.reason == "not-an-image"
    assert check_image(data, "x.jpg").reason == "not-an-image"


def test_eps_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    with pytest.raises(ImageDecodeError) as caught:
        open_rgb(EPS)
    assert caught.value.reason == "not-an-image" and calls == []


def test_max_pixels_refuses_from_the_header_before_decoding() -> None:
    header_only = png_header_only(3000, 2000)  # no pixel data: decoding it would fail otherwise
    with pytest.raises(ImageDecodeError) as caught:
        open_rgb(header_only, max_pixels=5_000_000)
    assert caught.value.reason == "too-many-pixels"
    assert "3000x2000" in caught.value.detail and "5000000" in caught.value.detail
    small = encode(noise(size=(40, 30)), "PNG")
    assert open_rgb(small, max_pixels=1200).size == (40, 30)  # the cap itself is allowed


def test_a_large_jpeg_decodes_at_a_reduced_scale_that_fits_the_cap() -> None:
    smooth = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    data = encode(smooth, "JPEG", quality=90)
    full = open_rgb(data)
    assert full.size == (1600, 1200)
    scaled = open_rgb(data, max_pixels=600_000)  # 1/2 scale: 800 x 600 = 480,000 pixels
    assert scaled.size == (800, 600)
    assert open_rgb(data, max_pixels=120_000).size == (400, 300)  # 1/4
    with pytest.raises(ImageDecodeError) as caught:
        open_rgb(data, max_pixels=20_000)  # even 1/8 (200 x 150) is over
    assert caught.value.reason == "too-many-pixels"
    resized = np.asarray(full.resize((800, 600), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(np.asarray(scaled, dtype=np.float32) - resized).mean() < 4  # same picture
