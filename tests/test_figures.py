"""Confusion-matrix orientation, CJK labels without tofu, and TensorBoard event files after a short fit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import make_trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from matplotlib.colors import to_hex
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

FASHION = list(FashionMNISTDataModule.classes)
HIRAGANA = list(K49DataModule.classes)
IPA_GOTHIC = Path(plots.CJK_FONT_FILES[0])


def shirts_as_tshirts() -> torch.Tensor:
    """Every Shirt (6) predicted as T-shirt/top (0); everything else right."""
    target = torch.arange(10).repeat(5)
    preds = torch.where(target == 6, 0, target)
    return MulticlassConfusionMatrix(10)(preds, target)


def test_true_classes_on_rows() -> None:
    confmat = shirts_as_tshirts()
    assert confmat[6, 0] == 5 and confmat[0, 6] == 0  # torchmetrics: rows = true, columns = predicted
    ax = confusion_matrix_figure(confmat, FASHION).axes[0]
    rates = ax.images[0].get_array()
    assert rates[6, 0] == 1.0 and rates[0, 6] == 0.0  # row-normalised colour: all Shirts went to column 0
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("True class", "Predicted class")
    assert [t.get_text() for t in ax.get_yticklabels()] == FASHION


def test_counts_annotated_for_ten_classes() -> None:
    ax = confusion_matrix_figure(shirts_as_tshirts(), FASHION).axes[0]
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert len(ax.texts) == 100 and ((0, 6), "5") in cells and ((6, 6), "0") in cells  # text at (column, row)


def test_most_confused_in_the_seeds_words() -> None:
    assert most_confused(shirts_as_tshirts(), FASHION, k=3) == ["5 × Shirt predicted as T-shirt/top"]


@pytest.mark.skipif(not IPA_GOTHIC.is_file(), reason="apt-get install fonts-ipafont-gothic")
def test_49_classes_legible_with_hiragana(tmp_path: Path) -> None:
    target = torch.arange(49).repeat(20)
    preds = torch.where(torch.rand(len(target), generator=torch.Generator().manual_seed(0)) < 0.7, target, 0)
    fig = confusion_matrix_figure(MulticlassConfusionMatrix(49)(preds, target), HIRAGANA)
    ax = fig.axes[0]
    assert not ax.texts and min(fig.get_size_inches()) >= 12  # no cell text, a larger canvas
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == HIRAGANA
    assert all(plots._covers(t.get_fontproperties().get_file(), t.get_text()) for t in labels)  # no tofu
    fig.savefig(tmp_path / "k49.png")


def test_falls_back_to_code_points_without_a_cjk_font(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib import font_manager

    monkeypatch.setattr(plots, "_candidate_fonts", lambda: (font_manager.findfont(font_manager.FontProperties()),))
    font, labels = label_font(["あ", "Bag"])
    assert font is None and labels == ["U+3042", "Bag"]


def test_image_grid_titles() -> None:
    fig = image_grid_figure(torch.rand(10, 1, 28, 28), [f"{i} / {i + 1}" for i in range(10)], ncols=4)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts][:2] == ["0 / 1", "1 / 2"]
    assert ax.images[0].get_array().shape[:2] == (10 + 3 * 38, 10 + 4 * 38)  # make_grid: 3 rows × 4 columns


def test_prediction_sheet_in_the_tutorials_colours() -> None:
    probs = torch.tensor([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    fig = prediction_sheet_figure(torch.rand(3, 28, 28), probs, ["cat", "dog", "bird"], [1, 1, None], ncols=3)
    (ax,) = fig.axes  # one canvas: the images and bars are its pixels, the captions its text
    captions = [(t.get_text(), t.get_color()) for t in ax.texts if t.get_gid() == "caption"]
    # right: caption and bar blue; wrong: caption red, the predicted bar red and the true one blue; no label: black
    assert captions == [("dog 80% (dog)", "tab:blue"), ("cat 70% (dog)", "tab:red"), ("bird 60%", "black")]
    bars = [painted_bars(ax.images[0].get_array(), i, 3) for i in range(3)]
    blue, red, grey, black = to_hex("tab:blue"), to_hex("tab:red"), "#777777", "#000000"
    assert [colours for colours, _ in bars] == [[grey, blue, grey], [red, blue, grey], [grey, grey, black]]
    assert bars[0][1] == pytest.approx([0.1, 0.8, 0.1], abs=1 / 150)  # heights in the 150-pixel box


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


def test_figures_drawn_in_the_background_are_written_when_fit_returns(
    fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path
) -> None:
    """The drawing thread is joined in `teardown`: every epoch's figure is in the event file once `fit` returns."""
    logger = TensorBoardLogger(tmp_path, name="tb")
    figures = TensorBoardFigures(max_images=8)
    trainer = make_trainer(tmp_path, max_epochs=3, logger=logger, callbacks=[figures])
    trainer.fit(MLPClassifier(), fashion(steps_per_execution=4))
    assert figures.pending == [] and figures.drawing is None
    assert not [t for t in threading.enumerate() if t.name.startswith("TensorBoardFigures")]
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
    assert trainer.callbacks[0].writer is None or not isinstance(trainer.callbacks[0], TensorBoardFigures)


def test_bad_callback_arguments() -> None:
    with pytest.raises(ValueError, match=r"max_images=0 is out of range; allowed: a positive integer"):
        TensorBoardFigures(max_images=0)
    with pytest.raises(ValueError, match=r"sheet_images=-1 is out of range; allowed: an integer >= 0"):
        TensorBoardFigures(sheet_images=-1)
