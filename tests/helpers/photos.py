"""Pictures made the way a user's would be, from 28×28 data set images: a dark object on a light, tinted backdrop,
a few hundred pixels, a random aspect ratio with margins, mild JPEG compression; and a decompression bomb."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One uint8 (28, 28) data set image as an RGB photo: inverted onto white, upscaled 7-14× (its shape kept),
    margins of 5-60% of its size on each side (so the canvas has a random aspect ratio), a colour tint."""
    scale = rng.uniform(7.0, 14.0)
    side = round(28 * scale)
    obj = Image.fromarray(255 - image).resize((side, side), Image.Resampling.BICUBIC)
    left, right, top, bottom = (round(side * rng.uniform(0.05, 0.6)) for _ in range(4))
    canvas = Image.new("L", (left + side + right, top + side + bottom), 255)
    canvas.paste(obj, (left, top))
    tint = rng.uniform(0.8, 1.0, size=3)  # warm, cool or greenish light: each channel dimmed by up to 20%
    rgb = np.asarray(canvas, dtype=np.float32)[..., None] * tint
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8), "RGB")


def write_photos(images: np.ndarray, folder: Path, seed: int = 0, quality: int = 85) -> list[Path]:
    """`photo` of each image, saved as `folder/NNNNN.jpg` (JPEG quality 85: mild compression); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i:05d}.jpg" for i in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        photo(image, rng).save(path, quality=quality)
    return paths


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A decompression bomb: a grey PNG of width × height black pixels, 62 KB on disk for 8000 × 8000.
    `rows` < height writes only that many rows (Pillow refuses the picture from its header, before any data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stream = zlib.compressobj(9)
    idat = b"".join(stream.compress(bytes(width + 1)) for _ in range(rows or height)) + stream.flush()  # filter+row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def blank_pictures(folder: Path) -> list[Path]:
    """Pictures in which nothing stands out from the background: all black, all white, fully transparent, 1×1."""
    folder.mkdir()
    pictures = {
        "black.png": Image.new("RGB", (60, 40), (0, 0, 0)),
        "white.jpg": Image.new("RGB", (60, 40), (255, 255, 255)),
        "transparent.png": Image.new("RGBA", (60, 40), (200, 30, 30, 0)),
        "dot.png": Image.new("L", (1, 1), 128),
    }
    for name, picture in pictures.items():
        picture.save(folder / name)
    return [folder / name for name in pictures]
