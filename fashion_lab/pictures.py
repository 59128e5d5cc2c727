"""Your own pictures as model inputs: read any common format, then make it look like a Fashion-MNIST image.

Fashion-MNIST was made from product photos (Xiao et al. 2017, "Fashion-MNIST"): trim the edges close to
the background colour, resize the longest edge to 28, centre on a 28×28 canvas, negate, 8-bit grey. `prepare`
applies the same steps to a user's picture, so a dark shirt photographed on a light table reaches the model as the
data set's light shirt on black, filling the frame.

>>> picture = np.ones((300, 200), np.float32)     # white paper...
>>> picture[100:200, 50:150] = 0.2                # ...with a dark grey square on it, off-centre
>>> x = prepare(picture)                          # inverted, cropped to the square, which fills the frame
>>> x.shape, x.dtype.name, x.min().item(), x.max().item()
((28, 28), 'uint8', 204, 204)
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from fashion_lab.errors import DataError

InvertMode = Literal["auto", "always", "never"]
# Pictures above this many pixels are refused before decoding (a decompression bomb can claim 30,000 × 30,000 in a
# few kilobytes). 50 MP covers every common phone and camera photo; its RGB decode takes 150 MB.
MAX_PIXELS = 50_000_000
# JPEGs are decoded by libjpeg's DCT scaling at the smallest 1/2, 1/4 or 1/8 size whose long side keeps this many
# pixels: ample for a 28-pixel result even when the object fills a tenth of the photo, and far faster than full size.
DECODE_LONG_SIDE = 1024
# What `predict` and the page say instead of probabilities for a picture in which nothing stands out from the
# background by more than the threshold (a blank, uniform, fully transparent or 1-pixel picture): its 28×28 is black.
NO_OBJECT = "no object found"
# Files that are not pictures on disk: opening a FIFO would wait for a writer, a device would be read without end.
_NOT_REGULAR = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket",
                stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}  # fmt: skip


class PictureError(DataError):
    """One picture cannot be read; the message is the reason (the caller names the file and carries on)."""


def read_grey(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The picture at `path` as grey float32 (H, W) in [0, 1]: first frame, EXIF orientation applied, alpha
    composited onto a background that contrasts with the object; PictureError says why a file cannot be read."""
    try:
        status = path.stat()
    except FileNotFoundError as e:
        raise PictureError("no such file") from e
    kind = next((name for is_kind, name in _NOT_REGULAR.items() if is_kind(status.st_mode)), None)
    if kind is not None:
        raise PictureError(f"not a regular file but {kind}. Fix: give a picture file (PNG, JPEG, WebP, BMP, GIF)")
    if status.st_size == 0:
        raise PictureError("empty file (0 bytes)")
    image = _decode(path, max_pixels)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit (or float) grey: keep its precision
        scale = 1.0 if image.mode == "F" else 65535.0
        return np.clip(np.asarray(image, dtype=np.float32) / scale, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        grey, alpha = np.moveaxis(_floats(image.convert("RGBA").convert("LA")), -1, 0)
        # transparent pixels take the colour the object is not: white behind a dark object, black behind a light one
        background = 1.0 if (grey * alpha).sum() < 0.5 * alpha.sum() else 0.0
        return grey * alpha + background * (1.0 - alpha)
    return _floats(image.convert("L"))  # ITU-R 601 luma, as Pillow and libjpeg compute it


def _decode(path: Path, max_pixels: int):
    """Open and fully decode one picture (first frame), or raise PictureError with the reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            image = Image.open(path)  # reads the header only
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise PictureError(
                    f"{width}×{height} = {width * height:,} pixels, over the limit of {max_pixels:,} (a possible "
                    "decompression bomb; if the picture is genuine, raise the limit: --data.max_pixels for predict, "
                    "--max_pixels for the page)"
                )
            scale = DECODE_LONG_SIDE / max(width, height)
            if scale < 1.0:  # JPEG only (a no-op for other formats): decode at a reduced size
                image.draft("L", (max(1, round(width * scale)), max(1, round(height * scale))))
            return ImageOps.exif_transpose(image)  # decodes; rotates/flips as the camera's EXIF Orientation says
    except PictureError:
        raise
    except Image.DecompressionBombError as e:  # over Pillow's own hard limit, which it checks on opening
        raise PictureError(f"over the limit of {max_pixels:,} pixels (a possible decompression bomb; {e})") from e
    except UnidentifiedImageError as e:
        raise PictureError("not an image (Pillow recognises no image format in it)") from e
    except Exception as e:  # damaged data: decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error...
        raise PictureError(f"corrupt or truncated image ({type(e).__name__}: {e})") from e


def _floats(image) -> np.ndarray:
    """An 8-bit Pillow image ("L" or "LA") as float32 (H, W[, 2]) in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0


def prepare(
    grey: np.ndarray, invert: InvertMode = "auto", crop: bool = True, threshold: float = 0.15, margin: int = 0
) -> np.ndarray:
    """A grey picture (H, W) in [0, 1] → uint8 (28, 28) like a Fashion-MNIST image: light object on black.

    Steps: invert if the background is light (`auto`: the border's median grey is above 0.5); subtract the background
    level, so a tinted or grey backdrop becomes 0 as in the data set; crop to the pixels brighter than `threshold`;
    pad to a square (centred); resize to 28 - 2·margin with antialiasing; pad `margin` black pixels around; 8 bits.
    A picture with no pixel brighter than `threshold` has no object: it becomes all black (see `no_object`).
    numpy and Pillow, one thread: torch's thread pool only adds contention on pictures this small.

    >>> no_object(prepare(np.full((40, 30), 0.8, np.float32)))  # a uniform sheet: the background, nothing on it
    True
    """
    from PIL import Image

    background = float(np.median(_border(grey)))
    if invert == "always" or (invert == "auto" and background > 0.5):
        grey, background = 1.0 - grey, 1.0 - background
    grey = np.clip((grey - background) / max(1.0 - background, 1e-6), 0.0, 1.0, dtype=np.float32)
    mask = grey > threshold
    if not mask.any():
        return np.zeros((28, 28), np.uint8)
    if crop:
        grey = _crop(grey, mask)
    side = 28 - 2 * margin
    # Pillow's bilinear resize widens its filter by the reduction factor: an antialiased (area-like) downscale
    small = np.asarray(Image.fromarray(_pad_to_square(grey), "F").resize((side, side), Image.Resampling.BILINEAR))
    small = np.pad(small, margin)
    return (np.clip(small, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def no_object(image: np.ndarray) -> bool:
    """Whether a prepared 28×28 is all black: nothing stood out from the background, or it shrank to nothing."""
    return not image.any()


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring, 2% of the side deep (at least 1 pixel): where a photo shows its background."""
    h, w = grey.shape
    dh, dw = max(1, h // 50), max(1, w // 50)
    return np.concatenate([grey[:dh].ravel(), grey[-dh:].ravel(), grey[:, :dw].ravel(), grey[:, -dw:].ravel()])


def _crop(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels in `mask`, those above the threshold (`prepare` has checked that there is one)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _pad_to_square(grey: np.ndarray) -> np.ndarray:
    """Centre (H, W) on a black S×S square, S = max(H, W), as the data set extends its shortest edge."""
    h, w = grey.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    return np.pad(grey, ((top, s - h - top), (left, s - w - left)))


def describe(invert: InvertMode, crop: bool, threshold: float, margin: int, max_pixels: int) -> list[str]:
    """The preprocessing steps in words, for `--help`-readers and the exported model's JSON."""
    flip = {"auto": "invert if the border is light (median grey > 0.5)", "always": "invert", "never": "no inversion"}
    return [
        f"read with Pillow (PNG, JPEG, WebP, BMP, GIF first frame, 16-bit, palette); refuse over {max_pixels:,} pixels",
        "apply the EXIF orientation; composite transparency onto a background contrasting with the object",
        "grey: ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B)",
        flip[invert],
        "subtract the background level (the border's median), rescale to [0, 1]",
        f"crop to the pixels brighter than {threshold}" if crop else "no crop",
        f"no pixel brighter than {threshold}: no object (an all-black 28×28; `predict` writes '{NO_OBJECT}')",
        "pad to a square, centred",
        f"resize to {28 - 2 * margin}×{28 - 2 * margin} (bilinear, antialiased)"
        + (f", {margin} black pixels around" if margin else ""),
        "round to uint8 0..255: light object on black, as Fashion-MNIST",
    ]
