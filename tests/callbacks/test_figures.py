"""Confusion-matrix orientation, CJK labels without tofu, and TensorBoard event files after a short fit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from matplotlib.colors import to_hex
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.classification import MulticlassConfusionMatrix

from fashion_lab import FashionMNISTDataModule, K49DataModule, MLPClassifier, TensorBoardFigures, plots
from fashion_lab.plots import (
    confusion_matrix_figure,
    image_grid_figure,
    label_font,
    most_confused,
    prediction_sheet_figure,
)
from tests.helpers.trainer import make_trainer

FASHION = list(FashionMNISTDataModule.classes)
HIRAGANA = list(K49DataModule.classes)
IPA_GOTHIC = Path(plots.CJK_FONT_FILES[0])


def shirts_as_tshirts() -> torch.Tensor:
    """Every Shirt (6) predicted as T-shirt/top (0); everything else right."""
    target = torch.arange(10).repeat(5)
    preds = torch.where(target == 6, 0, target)
    return MulticlassConfusionMatrix(10)(preds, target)


def matrix_cells(image: Image.Image, n: int) -> Callable[[int, int], np.ndarray]:
    """cell(i, j): the pixels of the matrix's cell at row i, column j.

    Found from the figure alone: cell (0, 0) is all class 0 predicted as 0 in these tests, so its top-left pixel is
    the figure's top-left pixel of Blues' darkest shade (the colour bar, also reaching it, starts lower), and that
    shade's run along the cell's top row is one cell wide (cell (0, 1) is light)."""
    pixels = np.asarray(image)
    ys, xs = np.nonzero((pixels == plots.BLUES[255]).all(axis=2))
    y0, x0 = ys.min(), xs[ys == ys.min()].min()
    size = int((pixels[y0 + 1, x0:] == plots.BLUES[255]).all(axis=1).argmin())
    assert size >= 10 and x0 + n * size < image.width and y0 + n * size < image.height
    return lambda i, j: pixels[y0 + i * size : y0 + (i + 1) * size, x0 + j * size : x0 + (j + 1) * size]


def test_true_classes_on_rows() -> None:
    confmat = shirts_as_tshirts()
    assert confmat[6, 0] == 5 and confmat[0, 6] == 0  # torchmetrics: rows = true, columns = predicted
    cell = matrix_cells(confusion_matrix_figure(confmat, FASHION), 10)
    # row-normalised colour (read at a corner: the count is in the middle): all Shirts (row 6) went to column 0
    assert (cell(6, 0)[1, 1] == plots.BLUES[255]).all() and (cell(6, 6)[1, 1] == plots.BLUES[0]).all()
    assert (cell(0, 6)[1, 1] == plots.BLUES[0]).all() and (cell(3, 3)[1, 1] == plots.BLUES[255]).all()


def test_colours_are_matplotlibs_blues() -> None:
    from matplotlib import colormaps

    assert np.abs(plots.BLUES - colormaps["Blues"](np.arange(256))[:, :3] * 255).max() <= 0.5


def test_counts_annotated_for_ten_classes() -> None:
    cell = matrix_cells(confusion_matrix_figure(shirts_as_tshirts(), FASHION), 10)
    # white text on the dark cell (6, 0) ("5"), black on the light cell (0, 6) ("0"); colour only at the corners
    assert (cell(6, 0) > 200).all(axis=2).any() and (cell(0, 6) < 60).all(axis=2).any()
    assert (cell(6, 0)[:5, :5] == plots.BLUES[255]).all() and (cell(0, 6)[:5, :5] == plots.BLUES[0]).all()


@pytest.mark.parametrize(
    ("names", "title"),
    [
        ([f"class number {i} with a long name" for i in range(10)], "Confusion matrix"),
        (["cat"], "test confusion matrix, epoch 12"),  # the title and the colour bar's label: wider than 1 class
        (["cat", "dog"], "test confusion matrix, epoch 12"),
    ],
)
def test_long_names_and_few_classes_fit(names: list[str], title: str) -> None:
    n = len(names)
    target = torch.arange(n).repeat(5)
    image = confusion_matrix_figure(MulticlassConfusionMatrix(max(n, 2))(target, target)[:n, :n], names, title)
    pixels = np.asarray(image)
    # nothing cut at the edges: the margins were measured from the text
    assert all((edge == 255).all() for edge in (pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]))
    if n == 10:
        assert image.width > confusion_matrix_figure(shirts_as_tshirts(), FASHION).width


def test_most_confused_in_the_seeds_words() -> None:
    assert most_confused(shirts_as_tshirts(), FASHION, k=3) == ["5 × Shirt predicted as T-shirt/top"]


@pytest.mark.skipif(not IPA_GOTHIC.is_file(), reason="apt-get install fonts-ipafont-gothic")
def test_49_classes_legible_with_hiragana() -> None:
    target = torch.arange(49).repeat(20)
    preds = torch.where(torch.rand(len(target), generator=torch.Generator().manual_seed(0)) < 0.7, target, 0)
    image = confusion_matrix_figure(MulticlassConfusionMatrix(49)(preds, target), HIRAGANA)
    assert min(image.size) > max(confusion_matrix_figure(shirts_as_tshirts(), FASHION).size)  # a larger canvas
    file, labels = label_font(HIRAGANA)
    assert labels == HIRAGANA and plots._covers(file, "".join(HIRAGANA))  # drawn in a font with every kana: no tofu
    cell = matrix_cells(image, 49)
    assert all((cell(i, j) == cell(i, j)[0, 0]).all() for i in range(49) for j in range(49))  # no cell text


def test_falls_back_to_code_points_without_a_cjk_font(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "_candidate_fonts", lambda: (plots.default_font_file(),))
    file, labels = label_font(["あ", "Bag"])
    assert file is None and labels == ["U+3042", "Bag"]
    assert label_font(["Bag", "Coat"]) == (plots.default_font_file(), ["Bag", "Coat"])  # ASCII: no glyph check


def test_image_grid_titles() -> None:
    image = image_grid_figure(torch.rand(10, 1, 28, 28), [f"{i} / {i + 1}" for i in range(10)], ncols=4)
    scale = plots.GRID_CELL // 28
    assert image.size == (scale * (10 + 4 * 38), scale * (10 + 3 * 38))  # make_grid: 3 rows × 4 columns
    pixels = np.asarray(image)
    for k in range(12):  # each title in the padding above its image; the two empty cells have none
        x, y = scale * (10 + (k % 4) * 38), scale * ((k // 4) * 38)
        band = pixels[y : y + scale * 10, x : x + scale * 28]
        assert (band < 100).all(axis=2).any() == (k < 10), k


def test_image_grid_of_large_tall_images_is_not_enlarged() -> None:
    image = image_grid_figure(torch.rand(5, 1, 224, 112), [str(i) for i in range(5)], ncols=4)
    assert image.size == (10 + 4 * 122, 10 + 2 * 234)  # at their own size: make_grid's 2 rows × 4 columns
    pixels = np.asarray(image)
    band = pixels[234 : 234 + 10, 10 : 10 + 112]  # the title of image 4, above the second row
    assert (band < 100).all(axis=2).any()


def test_prediction_sheet_in_the_tutorials_colours() -> None:
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    image = prediction_sheet_figure(torch.rand(3, 28, 28), probs, ["cat", "dog", "bird"], [1, 1, None], ncols=3)
    pixels = np.asarray(image)
    blue, red, grey, black = "#1f77b4", "#d62728", "#777777", "#000000"
    # right: caption and bar blue; wrong: caption red, the predicted bar red and the true one blue; no label: black
    assert [caption_colours(pixels, i) & {blue, red, black} for i in range(3)] == [{blue}, {red}, {black}]
    bars = [painted_bars(pixels, i, 3) for i in range(3)]
    assert [colours for colours, _ in bars] == [[grey, blue, grey], [red, blue, grey], [grey, grey, black]]
    assert bars[0][1] == pytest.approx([0.1, 0.8, 0.1], abs=1 / 150)  # heights in the 150-pixel box


def caption_colours(pixels: np.ndarray, cell: int) -> set[str]:
    """The colours of the caption under the image of cell `cell` of the first row (its glyphs' solid pixels)."""
    left, _, right, bottom = plots.SHEET_IMAGE_BOX
    x0 = cell * plots.SHEET_CELL[0]
    band = pixels[bottom + 4 : bottom + 24, x0 : x0 + left + right].reshape(-1, 3)
    return {to_hex(c / 255) for c in np.unique(band, axis=0)}


def painted_bars(pixels: np.ndarray, cell: int, classes: int) -> tuple[list[str], list[float]]:
    """Colour and height (a fraction of the box) of each bar in cell `cell` of the first row, read from the pixels."""
    left, top, right, bottom = plots.SHEET_BARS_BOX
    left, right = left + cell * plots.SHEET_CELL[0], right + cell * plots.SHEET_CELL[0]
    colours, heights = [], []
    for j in range(classes):
        column = pixels[top:bottom, round(left + (j + 0.5) * (right - left) / classes), :3]
        colours.append(to_hex(column[-1] / 255))
        heights.append(float((column != 255).any(axis=1).sum()) / (bottom - top))
    return colours, heights


def read_events(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_events_after_short_fit(fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path) -> None:
    L.seed_everything(0)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[TensorBoardFigures(max_images=8)])
    model = MLPClassifier(kernel_regularizer="l2", l2=1e-4)
    trainer.fit(model, fashion(steps_per_execution=4))
    trainer.test(model, fashion(), verbose=False)
    events = read_events(logger.log_dir)
    scalars = {"train/loss", "train/acc", "train/reg_loss", "val/loss", "val/acc", "val/balanced_acc"}
    scalars |= {"test/loss", "test/acc", "test/balanced_acc", "test/class_acc/Shirt"}
    assert scalars <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/acc")) == 2  # one per epoch, none from the sanity check
    assert len(events.Images("val/confusion_matrix")) == 2
    for tag in ("test/confusion_matrix", "train/sample_inputs", "test/misclassified", "test/predictions"):
        image = events.Images(tag)[0]
        assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 100, tag
    sheet = events.Images("test/predictions")[0]
    assert (sheet.width, sheet.height) == (1200, 1150)  # the tutorial's 15 images: 5 rows of 3 (image, bars) pairs
    assert {"val/most_confused/text_summary", "test/most_confused/text_summary"} <= set(events.Tags()["tensors"])
    text = events.Tensors("test/most_confused/text_summary")[0].tensor_proto.string_val[0].decode()
    assert " predicted as " in text and " × " in text


def test_every_epochs_figure_is_written(fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[TensorBoardFigures(max_images=8)])
    trainer.fit(MLPClassifier(), fashion(steps_per_execution=4))
    events = read_events(logger.log_dir)
    assert [e.step for e in events.Images("val/confusion_matrix")] == [16, 32, 48]  # 512 images / 32 a step
    assert len(events.Images("train/sample_inputs")) == 1


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_figures_are_a_no_op_without_tensorboard(
    logger: str, fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path
) -> None:
    trainer = make_trainer(
        tmp_path,
        fast_dev_run=2,
        logger=CSVLogger(tmp_path) if logger == "csv" else False,
        callbacks=[TensorBoardFigures()],
    )
    model = MLPClassifier()
    trainer.fit(model, fashion())
    trainer.test(model, fashion(), verbose=False)
    (figures,) = [cb for cb in trainer.callbacks if isinstance(cb, TensorBoardFigures)]
    assert figures.writer is None


def test_bad_callback_arguments() -> None:
    with pytest.raises(ValueError, match=r"max_images=0 is out of range; allowed: a positive integer"):
        TensorBoardFigures(max_images=0)
    with pytest.raises(ValueError, match=r"sheet_images=-1 is out of range; allowed: an integer >= 0"):
        TensorBoardFigures(sheet_images=-1)
