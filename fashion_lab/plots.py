"""Figures for TensorBoard, `predict` and the study report: the confusion matrix, the most-confused pairs, labelled
image grids, and the TF tutorial's sheet of images beside their probability bars.

Each figure is one RGB `PIL.Image.Image`: TensorBoardFigures writes it as TensorBoard's image summary, `predict`
and the report save it as PNG. They are painted with PIL by hand, although matplotlib (and torchmetrics' `.plot`)
draw such figures: matplotlib's text layout took ~0.15 s for one 10-class confusion matrix (its 100 counts) and ~1 s
for the figures of a seed `fit`, whose figures may cost 0.3 s in all; PIL paints a confusion matrix in ~10 ms.
matplotlib is used only where its files are needed: its DejaVu Sans font, and the glyph check of non-ASCII labels.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

# Fonts with hiragana, first found wins: Debian's fonts-ipafont-gothic (apt-get install fonts-ipafont-gothic), Noto CJK
CJK_FONT_FILES = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
CJK_FONT_FAMILIES = ("IPAGothic", "IPAPGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic", "VL Gothic")
ANNOTATE_MAX_CLASSES = 10  # beyond this, cell counts are unreadable: colour only
# matplotlib's "Blues": ColorBrewer's 9 steps (matplotlib's _cm._Blues_data) spread linearly over its 256 entries
BLUES_STEPS = [(247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214), (66, 146, 198),
               (33, 113, 181), (8, 81, 156), (8, 48, 107)]  # fmt: skip
BLUES = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, 9), c) for c in zip(*BLUES_STEPS, strict=True)])
BLUES = BLUES.T.round().astype(np.uint8)  # (256, 3)
COLOURS = {"grey": "#777777", "tab:red": "#d62728", "tab:blue": "#1f77b4", "black": "#000000"}  # matplotlib's tab:*


@cache
def default_font_file() -> str:
    """matplotlib's own DejaVu Sans (always installed with it), found without importing matplotlib."""
    (package,) = importlib.util.find_spec("matplotlib").submodule_search_locations
    return str(Path(package) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")


def _covers(path: str, text: str) -> bool:
    """Whether the font file has a glyph for every character of `text` (glyph 0 is the tofu box)."""
    from matplotlib.ft2font import FT2Font

    font = FT2Font(path)
    return all(font.get_char_index(ord(ch)) for ch in set(text) if not ch.isspace())


@cache
def _candidate_fonts() -> tuple[str, ...]:
    from matplotlib import font_manager

    found = [default_font_file(), *(f for f in CJK_FONT_FILES if Path(f).is_file())]
    for family in CJK_FONT_FAMILIES:
        try:
            found.append(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))
        except ValueError:
            continue
    return tuple(dict.fromkeys(found))


def label_font(labels: list[str]) -> tuple[str | None, list[str]]:
    """The file of a font that draws every label, or (None, code-point labels like "U+3042") so a figure never shows
    tofu; None stands for the default font."""
    text = "".join(labels)
    if text.isascii():  # DejaVu Sans has every ASCII glyph
        return default_font_file(), labels
    for path in _candidate_fonts():
        if _covers(path, text):
            return path, labels
    return None, [label if label.isascii() else "/".join(f"U+{ord(c):04X}" for c in label) for label in labels]


@cache
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """A font file at `size` pixels (10 pt at matplotlib's 100 dpi is 14 px); None: the default font."""
    return ImageFont.truetype(path or default_font_file(), size)


def _text_turned(
    canvas: Image.Image, xy: tuple[float, float], text: str, face: ImageFont.FreeTypeFont, angle: int, at: str = "mid"
) -> None:
    """Black text turned `angle` degrees anticlockwise (PIL draws text only level), with its middle or its end at `xy`
    (the end: the top right corner, where a label turned 45° or 90° ends)."""
    left, top, right, bottom = face.getbbox(text)
    mask = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=face)
    mask = mask.rotate(angle, resample=Image.BICUBIC, expand=True)
    x, y = (xy[0] - mask.width, xy[1]) if at == "end" else (xy[0] - mask.width / 2, xy[1] - mask.height / 2)
    x, y = round(x), round(y)
    canvas.paste((0, 0, 0), (x, y, x + mask.width, y + mask.height), mask)


PAD = 10  # pixels around a figure and between its parts
MIN_MATRIX = 250  # pixels: a matrix of 1 or 2 classes still holds the title and the colour bar's label
BAR_GAP, BAR_WIDTH = 25, 18  # the colour bar's distance from the matrix, and its width


def confusion_matrix_figure(confmat: Tensor, labels: list[str], title: str = "Confusion matrix") -> Image.Image:
    """True classes on rows, predictions on columns; colour = row-normalised (recall) in matplotlib's Blues with its
    colour bar, text = counts (≤ 10 classes). The margins are measured from the labels, so long class names fit."""
    n = len(labels)
    font_file, labels = label_font(labels)
    counts = confmat.detach().cpu().long()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    few = n <= ANNOTATE_MAX_CLASSES
    tick_font, count_font, axis_font = _font(font_file, 14 if few else 15), _font(None, 13), _font(None, 14)
    cell = max(50 if few else 20, -(-MIN_MATRIX // n))
    upright = max(map(len, labels)) <= 2  # single kana stand upright; longer labels turn 45° (≤ 10) or 90°
    label_width = max(tick_font.getlength(s) for s in labels)
    line = axis_font.size + 4  # one line of axis-label text
    x0 = round(PAD + line + 8 + label_width + 8)  # the matrix's left edge: axis label, tick labels, tick marks
    y0 = PAD + line + PAD  # below the title
    side = n * cell
    x1, y1 = x0 + side, y0 + side
    # how far the column labels reach below the matrix: a 45° label sin 45° ≈ 0.71 of its length and line height
    tick_depth = line if upright else round(label_width * (0.71 if few else 1.0) + 0.71 * line)
    bar = (x1 + BAR_GAP, y0 + side // 10, x1 + BAR_GAP + BAR_WIDTH, y1 - side // 10)  # 0.8 of the matrix high
    title_font = _font(None, 16)
    title_width = title_font.getlength(title)
    width = round(max(bar[0] + _colour_bar_width(count_font, axis_font), title_width + 2 * PAD) + PAD)
    canvas = Image.new("RGB", (width, y1 + 8 + tick_depth + line + 16), "white")
    draw = ImageDraw.Draw(canvas)
    shades = (rates.numpy() * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(BLUES[shades]).resize((side, side), Image.NEAREST), (x0, y0))
    draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline="black")
    _class_ticks(canvas, labels, tick_font, (x0, y0), cell, angle=0 if upright else (45 if few else 90))
    if few:
        for (i, j), count in np.ndenumerate(counts.numpy()):
            colour = "white" if rates[i, j] > 0.5 else "black"
            xy = (x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell)
            draw.text(xy, str(count), fill=colour, font=count_font, anchor="mm")
    # the title over the matrix, moved in where it is wider than the matrix would leave room for
    title_x = min(max((x0 + x1) / 2, PAD + title_width / 2), width - PAD - title_width / 2)
    draw.text((title_x, PAD), title, fill="black", font=title_font, anchor="mt")
    draw.text(((x0 + x1) / 2, y1 + 8 + tick_depth + 8), "Predicted class", fill="black", font=axis_font, anchor="mt")
    _text_turned(canvas, (PAD + line / 2, (y0 + y1) / 2), "True class", axis_font, 90)
    _colour_bar(canvas, bar, count_font, axis_font)
    return canvas


def _class_ticks(
    canvas: Image.Image, labels: list[str], face: ImageFont.FreeTypeFont, origin: tuple[int, int], cell: int, angle: int
) -> None:
    """Tick marks and class names along the matrix's left edge (rows) and below it (columns, turned `angle`°)."""
    draw = ImageDraw.Draw(canvas)
    (x0, y0), bottom = origin, origin[1] + len(labels) * cell
    for k, label in enumerate(labels):
        x, y = x0 + (k + 0.5) * cell, y0 + (k + 0.5) * cell
        draw.line((x0 - 5, y, x0 - 1, y), fill="black")
        draw.text((x0 - 8, y), label, fill="black", font=face, anchor="rm")
        draw.line((x, bottom, x, bottom + 4), fill="black")
        if angle:
            _text_turned(canvas, (x + 4, bottom + 8), label, face, angle, at="end")
        else:
            draw.text((x, bottom + 8), label, fill="black", font=face, anchor="mt")


def _colour_bar_width(ticks: ImageFont.FreeTypeFont, axis: ImageFont.FreeTypeFont) -> float:
    """Pixels from the colour bar's left edge to the right of its label: bar, tick, "0.0", the label turned 90°."""
    return BAR_WIDTH + 6 + ticks.getlength("0.0") + 8 + axis.size + 4


def _colour_bar(
    canvas: Image.Image, box: tuple[int, int, int, int], ticks: ImageFont.FreeTypeFont, axis: ImageFont.FreeTypeFont
) -> None:
    """Blues from 1 (top) to 0 (bottom) in `box`, ticks every 0.2, and its label turned 90° to its right."""
    left, top, right, bottom = box
    ramp = BLUES[np.linspace(255, 0, bottom - top).round().astype(int)]  # (height, 3): one colour per row
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None], right - left, axis=1)), (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left - 1, top - 1, right, bottom), outline="black")
    for k in range(6):
        y = bottom - k / 5 * (bottom - top)
        draw.line((right, y, right + 4, y), fill="black")
        draw.text((right + 6, y), f"{k / 5:.1f}", fill="black", font=ticks, anchor="lm")
    x = left + _colour_bar_width(ticks, axis) - (axis.size + 4) / 2
    _text_turned(canvas, (x, (top + bottom) / 2), "fraction of the true class", axis, 90)


def most_confused(confmat: Tensor, labels: list[str], k: int = 5) -> list[str]:
    """The k largest off-diagonal cells in the seed's words: "110 × T-shirt/top predicted as Shirt".

    >>> most_confused(torch.tensor([[5, 110], [3, 7]]), ["T-shirt/top", "Shirt"], k=1)
    ['110 × T-shirt/top predicted as Shirt']
    """
    off_diagonal = confmat.detach().cpu().clone().fill_diagonal_(0).flatten()
    counts, cells = off_diagonal.topk(min(k, len(off_diagonal)))
    n = confmat.shape[0]
    return [
        f"{c} × {labels[i // n]} predicted as {labels[i % n]}"
        for c, i in zip(counts.tolist(), cells.tolist(), strict=True)
        if c > 0
    ]


GRID_CELL = 112  # pixels: each image drawn at least this large (28 px images 4 × 4), its padding holds the titles


def image_grid_figure(images: Tensor, titles: list[str], ncols: int = 8) -> Image.Image:
    """Images (N, 1, H, W) tiled by torchvision's make_grid (each scaled to its own min–max), each titled above
    (e.g. "pred / true")."""
    from torchvision.utils import make_grid

    font_file, titles = label_font(titles)
    ncols = min(ncols, len(images))
    pad, (height, width) = 10, images.shape[-2:]  # the padding between rows holds each title
    scale = max(1, GRID_CELL // max(height, width))  # nearest neighbour: the model's pixels stay visible as squares
    grid = make_grid(images.detach().cpu().float(), nrow=ncols, padding=pad, normalize=True, pad_value=1.0)
    canvas = Image.fromarray(_to_uint8(grid).permute(1, 2, 0).numpy())
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    face = _font(font_file, 11)
    for k, title in enumerate(titles):
        # make_grid puts image k at row k // ncols, column k % ncols, each cell its size + pad pixels apart
        x = scale * (pad + (k % ncols) * (width + pad) + width / 2)
        y = scale * (pad + (k // ncols) * (height + pad)) - 4
        draw.text((x, y), title, fill="black", font=face, anchor="md")
    return canvas


# The prediction sheet, in pixels: one (image, bars) pair per 400 × 230 cell; boxes are (left, top, right, bottom)
# inside a cell.
SHEET_CELL = (400, 230)
SHEET_IMAGE_BOX = (35, 20, 185, 170)  # the caption below, up to ~200 px wide, stays inside
SHEET_BARS_BOX = (225, 20, 390, 170)  # probability 1 = the box's full height


def prediction_sheet_figure(
    images: Tensor,
    probs: Tensor,
    names: list[str],
    targets: list[int | None] | None = None,
    titles: list[str] | None = None,
    ncols: int = 3,
) -> Image.Image:
    """The TF tutorial's figure: each image (N, [1,] H, W) beside its bars of class probabilities (N, C).

    As in the tutorial: the predicted bar red and the true one blue (so a right prediction shows one blue bar), the
    caption "Sneaker 97% (Sneaker)" blue when right, red when wrong; without a true class, the predicted bar and the
    caption are black. `titles` (e.g. file names) go above the images. Images are shown with one grey scale for the
    whole sheet (darkest pixel black, brightest white), as the model received them.
    """
    n = len(probs)
    targets = targets if targets is not None else [None] * n
    confidence, predicted = probs.max(dim=1)
    captions = [
        f"{names[p]} {100 * q:.0f}%" + ("" if t is None else f" ({names[t]})")
        for p, q, t in zip(predicted.tolist(), confidence.tolist(), targets, strict=True)
    ]
    font_file, texts = label_font(captions + (titles or []))
    captions, titles = texts[:n], texts[n:] or None
    ncols = min(ncols, n)
    (width, height), (left, top, right, bottom) = SHEET_CELL, SHEET_IMAGE_BOX
    canvas = _sheet_canvas(images, probs, targets, ncols)
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        x, y = (i % ncols) * width + (left + right) / 2, (i // ncols) * height
        t = targets[i]
        colour = "black" if t is None else ("tab:blue" if predicted[i] == t else "tab:red")
        draw.text((x, y + bottom + 4), captions[i], fill=COLOURS[colour], font=_font(font_file, 14), anchor="ma")
        if titles:
            draw.text((x, y + top - 3), titles[i], fill="black", font=_font(font_file, 11), anchor="md")
    return canvas


def _sheet_canvas(images: Tensor, probs: Tensor, targets: list[int | None], ncols: int) -> Image.Image:
    """The sheet's pixels: each image scaled into its box, beside its bars."""
    n = len(probs)
    images = images.detach().cpu().float().reshape(n, *images.shape[-2:])
    low, high = images.min(), images.max()
    pixels = _to_uint8((images - low) / (high - low).clamp(min=1e-6))
    (width, height), (left, top, right, bottom) = SHEET_CELL, SHEET_IMAGE_BOX
    sheet = Image.new("RGB", (width * ncols, height * -(-n // ncols)), "white")
    draw = ImageDraw.Draw(sheet)
    side = min(right - left, bottom - top)
    for i in range(n):
        x0, y0 = (i % ncols) * width, (i // ncols) * height
        picture = Image.fromarray(pixels[i].numpy())
        scale = side / max(picture.size)  # nearest neighbour: the model's pixels stay visible as squares
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.NEAREST)
        sheet.paste(picture, (x0 + (left + right - picture.width) // 2, y0 + (top + bottom - picture.height) // 2))
        _draw_bars(draw, (x0, y0), probs[i].tolist(), targets[i])
    return sheet


def _draw_bars(draw: ImageDraw.ImageDraw, origin: tuple[int, int], probs: list[float], target: int | None) -> None:
    """One image's bars in its cell at `origin`: framed, grey, the predicted red (black without a target), the true
    blue; the class numbers below them (≤ 10 classes)."""
    (x0, y0), (left, top, right, bottom) = origin, SHEET_BARS_BOX
    left, top, right, bottom = left + x0, top + y0, right + x0, bottom + y0
    draw.rectangle((left - 1, top - 1, right, bottom), outline="black")
    digits = _font(None, 10) if len(probs) <= ANNOTATE_MAX_CLASSES else None
    predicted, slot = probs.index(max(probs)), (right - left) / len(probs)
    for j, p in enumerate(probs):
        colour = "tab:blue" if j == target else "grey"
        if j == predicted and j != target:
            colour = "black" if target is None else "tab:red"
        centre, height = left + (j + 0.5) * slot, round(p * (bottom - top))
        if height:
            box = (round(centre - 0.4 * slot), bottom - height, round(centre + 0.4 * slot) - 1, bottom - 1)
            draw.rectangle(box, fill=COLOURS[colour])
        if digits:
            draw.text((centre, bottom + 2), str(j), fill="black", font=digits, anchor="mt")


def _to_uint8(images: Tensor) -> Tensor:
    """[0, 1] floats as 0-255 bytes."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


# matplotlib's "RdBu_r": ColorBrewer's 11-step RdBu (matplotlib's _cm._RdBu_data) reversed, blue below 0 and red
# above, spread over an odd number of entries so that 0 falls exactly on the middle one, the map's centre colour.
# The units image is a palette PNG (a third of an RGB one's bytes, which TensorBoard's writer checksums in Python):
# 239 map entries, the grey between tiles, then 16 greys from black to white for the scale's anti-aliased labels.
RDBU_R_STEPS = [(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
                (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)]  # fmt: skip
RDBU_R = np.stack(
    [np.interp(np.linspace(0, 1, 239), np.linspace(0, 1, 11), c) for c in zip(*RDBU_R_STEPS, strict=True)]
)
RDBU_R = RDBU_R.T.round().astype(np.uint8)  # (239, 3); RDBU_R[119] is weight 0
UNIT_GAP, UNIT_BACKGROUND, SCALE_HEIGHT = 2, 96, 20  # pixels between tiles, their grey, the scale's strip below
TEXT_SHADES = np.linspace(0, 255, 16).round()  # black ... white, the canvas
TEXT_GREYS = np.repeat(TEXT_SHADES[:, None], 3, axis=1)
UNITS_PALETTE = np.vstack([RDBU_R, [(UNIT_BACKGROUND,) * 3], TEXT_GREYS]).astype(np.uint8)  # 256 entries
GAP_INDEX, WHITE_INDEX = len(RDBU_R), len(UNITS_PALETTE) - 1


def units_grid_columns(units: int) -> int:
    """Tiles per row: about twice as wide as high (128 units: 16 × 8), which fits TensorBoard's wide image cards."""
    return math.ceil(math.sqrt(2 * units))


def dense_units_figure(kernel: Tensor, tile: tuple[int, int]) -> Image.Image:
    """A Dense kernel (units, H·W) as one H × W tile per unit: the input pixels each unit weighs, red for positive,
    blue for negative, on one scale for all tiles centred on 0, which the strip below shows: ±the 99th percentile of
    |w| (a few large weights would leave every other pixel near white), beyond it the map's ends.

    Each tile is 1 px per input pixel, UNIT_GAP grey pixels apart: 128 units of 28 × 28 are 482 × 242 px of tiles.
    A palette ("P") image with UNITS_PALETTE.
    """
    weights = kernel.detach().float().cpu().numpy()  # numpy: one thread, no torch thread pool to wake per epoch
    units, (height, width) = weights.shape[0], tile
    ncols = units_grid_columns(units)
    nrows = -(-units // ncols)
    size = np.abs(weights)
    bound = float(np.quantile(size, 0.99)) or float(size.max()) or 1.0  # all zero: every tile the centre colour
    centre = len(RDBU_R) // 2
    tiles = np.full((nrows * ncols, height, width), GAP_INDEX, dtype=np.uint8)
    tiles[:units] = np.rint(weights / bound * centre + centre).clip(0, 2 * centre).reshape(units, height, width)
    grid = np.full((nrows, height + UNIT_GAP, ncols, width + UNIT_GAP), GAP_INDEX, dtype=np.uint8)
    grid[:, UNIT_GAP:, :, UNIT_GAP:] = tiles.reshape(nrows, ncols, height, width).transpose(0, 2, 1, 3)
    grid = grid.reshape(nrows * (height + UNIT_GAP), -1)
    grid = np.pad(grid, ((0, UNIT_GAP), (0, UNIT_GAP)), constant_values=GAP_INDEX)
    pixels = np.full((grid.shape[0] + SCALE_HEIGHT, grid.shape[1]), WHITE_INDEX, dtype=np.uint8)
    pixels[: grid.shape[0]] = grid
    _diverging_scale(pixels[grid.shape[0] :], bound)
    canvas = Image.fromarray(pixels, "P")
    canvas.putpalette(UNITS_PALETTE.tobytes())
    return canvas


def _diverging_scale(strip: np.ndarray, bound: float) -> None:
    """The colour ramp from -bound to +bound in the strip's palette indices, its two ends labelled."""
    face = _font(None, 11)
    low, high = f"{-bound:.2g}", f"+{bound:.2g}"
    label = max(face.getlength(low), face.getlength(high))
    top, bottom = 5, SCALE_HEIGHT - 5
    left, right = round(PAD + label + 4), round(strip.shape[1] - PAD - label - 4)
    if right - left < 10:  # too narrow for a ramp
        return
    strip[top:bottom, left:right] = np.linspace(0, len(RDBU_R) - 1, right - left).round().astype(np.uint8)
    # the labels drawn anti-aliased as coverage, then each covered pixel as one of the 16 shades, white to black
    text = Image.new("L", (strip.shape[1], strip.shape[0]))
    draw, middle = ImageDraw.Draw(text), (top + bottom) / 2
    draw.text((left - 4, middle), low, fill=255, font=face, anchor="rm")
    draw.text((right + 4, middle), high, fill=255, font=face, anchor="lm")
    coverage = np.asarray(text)
    inked = coverage > 0
    strip[inked] = WHITE_INDEX - np.rint(coverage[inked] / 255 * (len(TEXT_SHADES) - 1)).astype(np.uint8)
