"""Reading a user's pictures in every common format, the preprocessing that makes them look like the data set, and
the reason given for each file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_lab.pictures import MAX_PIXELS, PictureError, prepare, read_grey
from tests.helpers.photos import png_bomb


def reference() -> np.ndarray:
    """A dark asymmetric object (a coat, a light collar on its left) off-centre on white paper, uint8 (160, 120)."""
    picture = np.full((160, 120), 255, np.uint8)
    picture[30:130, 20:80] = 40
    picture[30:45, 20:40] = 200  # the collar: tells a rotated or flipped reading apart
    return picture


def expected() -> np.ndarray:
    return prepare(reference() / 255.0)


def test_prepare_makes_a_data_set_image() -> None:
    x = expected()
    assert x.shape == (28, 28) and x.dtype == np.uint8
    # inverted (the dark coat is light), the background is 0, the object fills the frame's height (100 px → 28)
    # and is centred across it (60 px wide → 17 columns, padded equally on both sides)
    assert x[:, 0].max() == 0 and x[:, -1].max() == 0 and x[0].max() > 150 and x[-1].max() > 150
    columns = np.flatnonzero(x.max(axis=0) > 0)
    assert 16 <= len(columns) <= 18 and abs(columns[0] - (27 - columns[-1])) <= 1
    assert x[14, 14] == round((255 - 40) / 255 * 255)  # the coat's grey, inverted, unscaled
    assert x[1, columns[0] + 2] < 100  # the collar stays top-left: dark once inverted


def test_background_tint_and_level_are_removed() -> None:
    tinted = reference() / 255.0 * 0.8  # grey paper: the backdrop at 0.8, the object darker by the same factor
    x = prepare(tinted)
    assert x[:, 0].max() == 0  # the backdrop becomes exactly 0, as in the data set
    assert abs(int(x[14, 14]) - int(expected()[14, 14])) <= 2  # (0.8 - 0.8·40/255) / 0.8: the same object grey


@pytest.mark.parametrize(
    ("invert", "light_object"),
    [("auto", False), ("auto", True), ("always", False), ("never", True)],
)
def test_invert_modes(invert: str, light_object: bool) -> None:
    picture = reference() if not light_object else 255 - reference()  # light object on black: no inversion needed
    x = prepare(picture / 255.0, invert=invert)
    assert np.abs(x.astype(int) - expected()).max() <= 1


def test_margin_and_no_crop() -> None:
    x = prepare(reference() / 255.0, margin=4)
    assert x[:4].max() == 0 and x[-4:].max() == 0 and x[4].max() > 150  # MNIST's 20×20 box in the 28×28 frame
    whole = prepare(reference() / 255.0, crop=False)  # the whole 160×120 page: the object is smaller
    assert (whole > 0).sum() < (expected() > 0).sum()


def save(picture: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(picture).save(path, **kwargs)
    return path


def rgb(picture: np.ndarray) -> np.ndarray:
    """Colour version with a warm tint; its 601 luma is close to `picture`."""
    return (picture[..., None] * np.array([1.0, 0.97, 0.9])).round().astype(np.uint8)


def exif_rotated(path: Path) -> Path:
    """Stored rotated a quarter turn, with EXIF Orientation 6 ("rotate 90° clockwise to view"), as phones do."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(reference()).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    return path


def gif_two_frames(path: Path) -> Path:
    """An animated GIF whose second frame is the negative: only the first may be read."""
    Image.fromarray(reference()).save(path, save_all=True, append_images=[Image.fromarray(255 - reference())])
    return path


def palette(path: Path) -> Path:
    Image.fromarray(rgb(reference())).quantize(16).save(path)
    return path


def transparent(path: Path, light_object: bool) -> Path:
    """The object opaque, everything else fully transparent (with a mid-grey colour under the transparency)."""
    grey = reference() if not light_object else 255 - reference()
    alpha = np.where(reference() < 255, 255, 0).astype(np.uint8)
    under = np.where(alpha == 0, 123, grey).astype(np.uint8)
    Image.fromarray(np.dstack([under, under, under, alpha]), "RGBA").save(path)
    return path


def large_jpeg(path: Path) -> Path:
    """A phone-sized photo, 4000 × 3000 (the reference upscaled 25×), rotated by EXIF as a phone stores it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    large = Image.fromarray(rgb(reference())).resize((3000, 4000), Image.Resampling.NEAREST)  # sharp edges
    large.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=90)
    return path


FORMATS = {
    # name: (writer of tmp_path / name, the largest pixel difference from the reference allowed)
    "png": (lambda p: save(reference(), p.with_suffix(".png")), 0),
    "jpeg_rgb": (lambda p: save(rgb(reference()), p.with_suffix(".jpg"), quality=90), 12),
    "webp": (lambda p: save(rgb(reference()), p.with_suffix(".webp"), quality=90), 12),
    "bmp": (lambda p: save(rgb(reference()), p.with_suffix(".bmp")), 4),
    "gif_first_frame": (lambda p: gif_two_frames(p.with_suffix(".gif")), 1),
    "png_16_bit": (lambda p: save(reference().astype(np.uint16) * 257, p.with_suffix(".png")), 1),
    "png_palette": (lambda p: palette(p.with_suffix(".png")), 4),
    "png_alpha_dark_object": (lambda p: transparent(p.with_suffix(".png"), light_object=False), 4),
    "png_alpha_light_object": (lambda p: transparent(p.with_suffix(".png"), light_object=True), 4),
    "jpeg_exif_rotated": (lambda p: exif_rotated(p.with_suffix(".jpg")), 12),
    "jpeg_12_megapixels": (lambda p: large_jpeg(p.with_suffix(".jpg")), 12),  # decoded at 1/4 size (draft)
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_reads_alike(name: str, tmp_path: Path) -> None:
    write, tolerance = FORMATS[name]
    diff = np.abs(prepare(read_grey(write(tmp_path / name))).astype(int) - expected())
    assert diff.max() <= tolerance, (name, diff.max())


def test_16_bit_keeps_its_precision(tmp_path: Path) -> None:
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 4096 levels: 16 per 8-bit step
    grey = read_grey(save(ramp, tmp_path / "ramp.png"))
    assert len(np.unique(grey)) == 4096 and grey.max() == pytest.approx(ramp.max() / 65535)


def good_png(path: Path) -> bytes:
    return save(reference(), path.with_suffix(".tmp.png")).read_bytes()


def byte_flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


BOMB = f"over the limit of {MAX_PIXELS:,}"
BAD = {
    "empty": (lambda p: b"", "empty file (0 bytes)"),
    "not_an_image": (lambda p: b"name,size\nshirt,M\n", "not an image (Pillow recognises no image format in it)"),
    "truncated_png": (lambda p: good_png(p)[:-60], "corrupt or truncated image ("),  # mid-IDAT
    "truncated_jpeg": (
        lambda p: save(rgb(reference()), p.with_suffix(".tmp.jpg")).read_bytes()[:700],
        "corrupt or truncated image (OSError: image file is truncated",
    ),
    "png_bad_checksum": (lambda p: byte_flipped(good_png(p), 60), "corrupt or truncated image ("),
    "bomb_over_our_limit": (
        lambda p: png_bomb(8_000, 8_000),
        f"8000×8000 = 64,000,000 pixels, {BOMB} (a possible decompression bomb; if the picture is genuine, raise the "
        "limit: --data.max_pixels for predict, --max_pixels for the page)",
    ),
    "bomb_over_pillows_limit": (lambda p: png_bomb(20_000, 20_000, rows=10), f"{BOMB} pixels"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_files_give_the_reason(name: str, tmp_path: Path) -> None:
    make, reason = BAD[name]
    path = tmp_path / f"{name}.png"
    path.write_bytes(make(path))
    with pytest.raises(PictureError) as error:
        read_grey(path)
    assert str(error.value).startswith(reason), str(error.value)
    assert "decompression bomb" in str(error.value) or "bomb" not in name
