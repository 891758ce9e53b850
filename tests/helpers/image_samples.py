"""Small image files of every kind the decoder must handle, made on the fly (no binaries).

``VALID`` maps a file name to bytes that must decode (and be kept by prepare);
``BROKEN`` maps a file name to (expected reason, bytes).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

SIZE = (64, 48)


def noise(seed: int = 0, size: tuple[int, int] = SIZE, mode: str = "RGB") -> Image.Image:
    """Random pixels: every JPEG block carries data, so a cut lands in the entropy-coded part."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4}.get(mode)
    shape = (size[1], size[0]) + ((channels,) if channels else ())
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def jpeg(seed: int = 0, size: tuple[int, int] = SIZE, **options: object) -> bytes:
    return encode(noise(seed, size), "JPEG", quality=90, **options)


def png_bytes(seed: int, width: int = 40, height: int = 30) -> bytes:
    """Random pixels as a PNG: distinct seeds give distinct images (the serve tests' inputs)."""
    return encode(noise(seed, (width, height)), "PNG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (wrong) IDAT.

    Pillow's decompression-bomb check runs on the header, before any pixel is
    decoded, so this is enough to trigger it, in no time and memory.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A PNG with intact chunk CRCs but garbage where the zlib stream should be."""
    data = bytearray(encode(noise(3), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 40] = bytes(range(40))
    crc_at = start + struct.unpack(">I", data[start - 8 : start - 4])[0]
    data[crc_at : crc_at + 4] = struct.pack(">I", zlib.crc32(bytes(data[start - 4 : crc_at])))
    return bytes(data)


def rotated_jpeg() -> bytes:
    """A 64x48 JPEG whose EXIF says "rotate 90 degrees" (orientation 6): shown as 48x64."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(noise(4), "JPEG", exif=exif.tobytes())


def _sixteen_bit(fmt: str) -> bytes:
    ramp = np.linspace(0, 65535, SIZE[0] * SIZE[1]).astype(np.uint16).reshape(SIZE[1], SIZE[0])
    return encode(Image.fromarray(ramp), fmt)


def _palette(transparent: bool) -> bytes:
    image = noise(5).convert("P")
    return encode(image, "PNG", **({"transparency": 0} if transparent else {}))


def _animated_gif() -> bytes:
    frames = [noise(i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


# Distinct seeds: every valid file has distinct bytes, so none is a duplicate.
VALID: dict[str, bytes] = {
    "rgb.jpg": jpeg(10),
    "upper.JPG": jpeg(11),
    "progressive.jpeg": jpeg(12, progressive=True),
    "rotated.jpg": rotated_jpeg(),
    "grayscale.png": encode(noise(13).convert("L"), "PNG"),
    "grayscale.jpg": encode(noise(14).convert("L"), "JPEG"),
    "rgba.png": encode(noise(15, mode="RGBA"), "PNG"),
    "la.png": encode(noise(16, mode="LA"), "PNG"),
    "palette.png": _palette(transparent=False),
    "palette-transparent.png": _palette(transparent=True),
    "cmyk.jpg": encode(noise(17, mode="CMYK"), "JPEG"),
    "sixteen-bit.png": _sixteen_bit("PNG"),
    "sixteen-bit.tif": _sixteen_bit("TIFF"),
    "lossy.webp": encode(noise(18), "WEBP"),
    "animated.gif": _animated_gif(),
    "bitmap.bmp": encode(noise(19), "BMP"),
}

_TRUNCATED_FROM = jpeg(20)

BROKEN: dict[str, tuple[str, bytes]] = {
    "truncated.jpg": ("truncated", _TRUNCATED_FROM[: len(_TRUNCATED_FROM) // 2]),
    "empty.jpg": ("empty", b""),
    "notes.jpg": ("not-an-image", b"field notes: 3 moths at the lamp, 22:10\n"),
    "bomb.png": ("decompression-bomb", png_header_only(20_000, 20_000)),
    # 10^8 pixels: between 1x and 2x MAX_IMAGE_PIXELS, where Pillow only warns.
    "bomb-warning.png": ("decompression-bomb", png_header_only(10_000, 10_000)),
    "corrupt.png": ("unreadable", corrupt_png()),
}
