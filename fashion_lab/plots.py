"""Figures for TensorBoard and `predict`: the confusion matrix, the most-confused pairs, labelled image grids, and
the TF tutorial's sheet of images beside their probability bars.

matplotlib is imported inside the drawing functions, so importing the package (and training without figures)
never pays for it. Figures are built with `matplotlib.figure.Figure` directly: no pyplot state, no GUI backend.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from PIL import ImageDraw

# Fonts with hiragana, first found wins: Debian's fonts-ipafont-gothic (apt-get install fonts-ipafont-gothic), Noto CJK
CJK_FONT_FILES = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
CJK_FONT_FAMILIES = ("IPAGothic", "IPAPGothic", "Noto Sans CJK JP", "Noto Sans JP", "TakaoGothic", "VL Gothic")
ANNOTATE_MAX_CLASSES = 10  # beyond this, cell counts are unreadable: colour only, on a larger canvas


def _covers(path: str, text: str) -> bool:
    """Whether the font file has a glyph for every character of `text` (glyph 0 is the tofu box)."""
    from matplotlib.ft2font import FT2Font

    font = FT2Font(path)
    return all(font.get_char_index(ord(ch)) for ch in set(text) if not ch.isspace())


@cache
def _candidate_fonts() -> tuple[str, ...]:
    from matplotlib import font_manager

    found = [font_manager.findfont(font_manager.FontProperties())]  # matplotlib's default (DejaVu Sans)
    found += [f for f in CJK_FONT_FILES if Path(f).is_file()]
    for family in CJK_FONT_FAMILIES:
        try:
            found.append(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))
        except ValueError:
            continue
    return tuple(dict.fromkeys(found))


def label_font(labels: list[str]) -> tuple[FontProperties | None, list[str]]:
    """A font that draws every label, or (None, code-point labels like "U+3042") so a figure never shows tofu."""
    from matplotlib.font_manager import FontProperties

    text = "".join(labels)
    for path in _candidate_fonts():
        if _covers(path, text):
            return FontProperties(fname=path), labels
    return None, [label if label.isascii() else "/".join(f"U+{ord(c):04X}" for c in label) for label in labels]


def confusion_matrix_figure(confmat: Tensor, labels: list[str], title: str = "Confusion matrix") -> Figure:
    """True classes on rows, predictions on columns; colour = row-normalised (recall), text = counts (≤ 10 classes)."""
    from matplotlib.figure import Figure

    n = len(labels)
    font, labels = label_font(labels)
    counts = confmat.detach().cpu().long()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    side = 7 if n <= ANNOTATE_MAX_CLASSES else max(12, 0.3 * n)
    fig = Figure(figsize=(side + 1, side))
    # Fixed margins in inches (room for "T-shirt/top" and the rotated ticks): matplotlib's constrained layout
    # would double the cost of drawing this figure every validation epoch.
    left, bottom = (1.5, 1.4) if n <= ANNOTATE_MAX_CLASSES else (0.9, 0.9)
    fig.subplots_adjust(left=left / (side + 1), bottom=bottom / side, right=0.98, top=1 - 0.5 / side)
    ax = fig.add_subplot()
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    few = n <= ANNOTATE_MAX_CLASSES
    rotation = 0 if max(map(len, labels)) <= 2 else (45 if few else 90)  # single kana stand upright
    ax.set_xticks(range(n), labels, rotation=rotation, fontproperties=font)
    ax.set_yticks(range(n), labels, fontproperties=font)
    ax.tick_params(labelsize=10 if few else 12)
    ax.set(xlabel="Predicted class", ylabel="True class", title=title)
    if few:
        for (i, j), count in zip(
            torch.cartesian_prod(torch.arange(n), torch.arange(n)).tolist(), counts.flatten(), strict=True
        ):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, str(count.item()), ha="center", va="center", fontsize=9, color=colour)
    return fig


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


def image_grid_figure(images: Tensor, titles: list[str], ncols: int = 8) -> Figure:
    """Images (N, 1, H, W) in [0, 1] tiled by torchvision's make_grid, each titled (e.g. "pred / true")."""
    from torchvision.utils import make_grid

    font, titles = label_font(titles)
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    pad, size = 10, images.shape[-1]  # the padding between rows holds each title
    grid = make_grid(images.detach().cpu().float(), nrow=ncols, padding=pad, normalize=True, pad_value=1.0)
    # 1.7 in a cell: wide enough for "Ankle boot / T-shirt/top"
    fig, ax = _canvas_figure(_to_uint8(grid).permute(1, 2, 0).numpy(), (1.7 * ncols, 1.7 * nrows), margin=0.01)
    for k, title in enumerate(titles):
        # make_grid puts image k at row k // ncols, column k % ncols, each cell `size + pad` pixels apart
        x = pad + (k % ncols) * (size + pad) + size / 2
        y = pad + (k // ncols) * (size + pad)
        ax.text(x, y, title, ha="center", va="bottom", fontsize=8, fontproperties=font, color="black")
    return fig


# The prediction sheet, in pixels at 100 dpi: one (image, bars) pair per 400 × 230 cell, as the 4.0 × 2.3 in
# subplot pairs were; boxes are (left, top, right, bottom) inside a cell.
SHEET_DPI = 100
SHEET_CELL = (400, 230)
SHEET_IMAGE_BOX = (35, 20, 185, 170)  # the caption below, up to ~200 px wide, stays inside
SHEET_BARS_BOX = (225, 20, 390, 170)  # probability 1 = the box's full height
BAR_COLOURS = {"grey": "#777777", "tab:red": "#d62728", "tab:blue": "#1f77b4", "black": "#000000"}


def prediction_sheet_figure(
    images: Tensor,
    probs: Tensor,
    names: list[str],
    targets: list[int | None] | None = None,
    titles: list[str] | None = None,
    ncols: int = 3,
) -> Figure:
    """The TF tutorial's figure: each image (N, [1,] H, W) beside its bars of class probabilities (N, C).

    As in the tutorial: the predicted bar red and the true one blue (so a right prediction shows one blue bar), the
    caption "Sneaker 97% (Sneaker)" blue when right, red when wrong; without a true class, the predicted bar and the
    caption are black. `titles` (e.g. file names) go above the images. Images are shown with one grey scale for the
    whole sheet (darkest pixel black, brightest white), as the model received them.

    Drawn as one canvas (images and bars painted with PIL, then one Axes with the captions as text): 30 matplotlib
    subplots took ~1 s to draw, in a `fit` whose figures may cost 0.3 s in all.
    """
    n = len(probs)
    targets = targets if targets is not None else [None] * n
    confidence, predicted = probs.max(dim=1)
    captions = [
        f"{names[p]} {100 * q:.0f}%" + ("" if t is None else f" ({names[t]})")
        for p, q, t in zip(predicted.tolist(), confidence.tolist(), targets, strict=True)
    ]
    font, texts = label_font(captions + (titles or []))
    captions, titles = texts[:n], texts[n:] or None
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    (width, height), (left, top, right, bottom) = SHEET_CELL, SHEET_IMAGE_BOX
    canvas = _sheet_canvas(images, probs, targets, ncols)
    fig, ax = _canvas_figure(canvas, (width * ncols / SHEET_DPI, height * nrows / SHEET_DPI))
    for i in range(n):
        x, y = (i % ncols) * width + (left + right) / 2, (i // ncols) * height
        t = targets[i]
        colour = "black" if t is None else ("tab:blue" if predicted[i] == t else "tab:red")
        ax.text(x, y + bottom + 4, captions[i], ha="center", va="top", color=colour, fontproperties=font, gid="caption")
        if titles:
            ax.text(x, y + top - 3, titles[i], ha="center", va="bottom", fontsize=8, fontproperties=font, gid="title")
    return fig


def _sheet_canvas(images: Tensor, probs: Tensor, targets: list[int | None], ncols: int) -> np.ndarray:
    """The sheet's pixels (H, W, 3) uint8: each image scaled into its box, beside its bars."""
    from PIL import Image, ImageDraw

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
    return np.asarray(sheet)


def _draw_bars(draw: ImageDraw.ImageDraw, origin: tuple[int, int], probs: list[float], target: int | None) -> None:
    """One image's bars in its cell at `origin`: framed, grey, the predicted red (black without a target), the true
    blue; the class numbers below them (≤ 10 classes), in matplotlib's default font at 7 pt."""
    from PIL import ImageFont

    (x0, y0), (left, top, right, bottom) = origin, SHEET_BARS_BOX
    left, top, right, bottom = left + x0, top + y0, right + x0, bottom + y0
    draw.rectangle((left - 1, top - 1, right, bottom), outline="black")
    digits = ImageFont.truetype(_candidate_fonts()[0], 10) if len(probs) <= ANNOTATE_MAX_CLASSES else None
    predicted, slot = probs.index(max(probs)), (right - left) / len(probs)
    for j, p in enumerate(probs):
        colour = "tab:blue" if j == target else "grey"
        if j == predicted and j != target:
            colour = "black" if target is None else "tab:red"
        centre, height = left + (j + 0.5) * slot, round(p * (bottom - top))
        if height:
            box = (round(centre - 0.4 * slot), bottom - height, round(centre + 0.4 * slot) - 1, bottom - 1)
            draw.rectangle(box, fill=BAR_COLOURS[colour])
        if digits:
            draw.text((centre, bottom + 2), str(j), fill="black", font=digits, anchor="mt")


def _to_uint8(images: Tensor) -> Tensor:
    """[0, 1] floats as 0-255 bytes: imshow then shows them without a float colour-mapping pass."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def _canvas_figure(pixels: np.ndarray, size: tuple[float, float], margin: float = 0.0) -> tuple[Figure, Axes]:
    """A Figure of `size` inches holding one Axes that shows `pixels` (H, W, 3 or 4) uint8, without ticks or frame."""
    from matplotlib.figure import Figure

    if pixels.shape[2] == 3:  # RGBA bytes: matplotlib's own RGB to RGBA conversion costs more than drawing them
        pixels = np.concatenate([pixels, np.full_like(pixels[..., :1], 255)], axis=2)
    fig = Figure(figsize=size, dpi=SHEET_DPI)
    ax = fig.add_axes((margin, margin, 1 - 2 * margin, 1 - 2 * margin))
    ax.imshow(pixels, interpolation="nearest")
    ax.set_axis_off()
    return fig, ax
