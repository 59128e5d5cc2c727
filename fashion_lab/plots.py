"""Figures for TensorBoard and `predict`: the confusion matrix, the most-confused pairs, labelled image grids, and
the TF tutorial's sheet of images beside their probability bars.

matplotlib is imported inside the drawing functions, so importing the package (and training without figures)
never pays for it. Figures are built with `matplotlib.figure.Figure` directly: no pyplot state, no GUI backend.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

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
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    font, titles = label_font(titles)
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    pad, size = 10, images.shape[-1]  # the padding between rows holds each title
    grid = make_grid(images.detach().cpu().float(), nrow=ncols, padding=pad, normalize=True, pad_value=1.0)
    fig = Figure(figsize=(1.7 * ncols, 1.7 * nrows))  # wide enough for "Ankle boot / T-shirt/top"
    fig.subplots_adjust(left=0.01, bottom=0.01, right=0.99, top=0.99)  # titles sit inside the grid's padding
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
    ax.set_axis_off()
    for k, title in enumerate(titles):
        # make_grid puts image k at row k // ncols, column k % ncols, each cell `size + pad` pixels apart
        x = pad + (k % ncols) * (size + pad) + size / 2
        y = pad + (k // ncols) * (size + pad)
        ax.text(x, y, title, ha="center", va="bottom", fontsize=8, fontproperties=font, color="black")
    return fig


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
    """
    from matplotlib.figure import Figure

    n, c = probs.shape
    targets = targets if targets is not None else [None] * n
    confidence, predicted = probs.max(dim=1)
    captions = [
        f"{names[p]} {100 * q:.0f}%" + ("" if t is None else f" ({names[t]})")
        for p, q, t in zip(predicted.tolist(), confidence.tolist(), targets, strict=True)
    ]
    font, texts = label_font(captions + (titles or []))
    captions, titles = texts[:n], texts[n:] or None
    images = images.detach().cpu().float().reshape(n, *images.shape[-2:])
    low, high = images.min().item(), images.max().item()
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4.0 * ncols, 2.3 * nrows))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.5 / (2.3 * nrows), top=1 - 0.3 / (2.3 * nrows), hspace=0.6)
    for i in range(n):
        p, t = predicted[i].item(), targets[i]
        colour = "black" if t is None else ("tab:blue" if p == t else "tab:red")
        ax = fig.add_subplot(nrows, 2 * ncols, 2 * i + 1)
        ax.imshow(images[i].numpy(), cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
        ax.set(xticks=[], yticks=[])
        ax.set_xlabel(captions[i], color=colour, fontproperties=font)
        if titles:
            ax.set_title(titles[i], fontsize=8, fontproperties=font)
        bars_ax = fig.add_subplot(nrows, 2 * ncols, 2 * i + 2)
        bars = bars_ax.bar(range(c), probs[i].tolist(), color="#777777")  # the tutorial's grey
        bars_ax.set_ylim(0.0, 1.0)
        bars_ax.set_yticks([])
        bars_ax.set_xticks(range(c) if c <= ANNOTATE_MAX_CLASSES else [])
        bars_ax.tick_params(labelsize=7)
        bars[p].set_color("black" if t is None else "tab:red")
        if t is not None:
            bars[t].set_color("tab:blue")
    return fig
