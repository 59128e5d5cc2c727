"""TensorBoard figures: confusion matrices, the most-confused pairs, sample inputs, misclassified test images, and
the TF tutorial's images beside their probability bars.

trainer = L.Trainer(logger=TensorBoardLogger("runs"), callbacks=[TensorBoardFigures()])
With another logger, or none, the callback does nothing (training is never slowed or broken by it).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import lightning as L
import torch
from PIL import Image
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from fashion_lab.errors import check, positive_integer
from fashion_lab.plots import confusion_matrix_figure, image_grid_figure, most_confused, prediction_sheet_figure
from fashion_lab.steps_per_execution import NoStepHooks
from fashion_lab.tensorboard import tensorboard_logger

if TYPE_CHECKING:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter


class TensorBoardFigures(NoStepHooks, L.Callback):
    """Every validation epoch (not the sanity check) and at test: `<stage>/confusion_matrix` figure and
    `<stage>/most_confused` text; once: `train/sample_inputs`; at test: `test/misclassified` ("pred / true") and
    `test/predictions`, the TF tutorial's figure: the first test images beside their probability bars, blue when
    right and red when wrong, with the confidence in %.

    Reads the predictions that the model's validation/test steps return, and the model's `class_names`; the
    probabilities of the `test/predictions` images come from one extra forward pass over those few images.
    Each figure is painted with PIL (`fashion_lab.plots`) and written by the hook that completes it, in the run's own
    thread: a torch op in a second thread would compete with the training steps for the CPU's cores.

    Args:
        max_images: images in each grid.
        top_confused: pairs listed in the most-confused text.
        sheet_images: test images in `test/predictions` (the tutorial shows 15, in rows of 3); 0 = none.
    """

    def __init__(self, max_images: int = 32, top_confused: int = 5, sheet_images: int = 15) -> None:
        check(
            [
                positive_integer("max_images", max_images),
                positive_integer("top_confused", top_confused),
                ("sheet_images", sheet_images, isinstance(sheet_images, int) and sheet_images >= 0, "an integer >= 0"),
            ]
        )
        self.max_images, self.top_confused, self.sheet_images = max_images, top_confused, sheet_images
        self.writer = self.confmat = None
        self.active = False  # a TensorBoard logger exists: every rank counts, only rank 0 writes
        self.wrong_images: list[Tensor] = []
        self.wrong_titles: list[str] = []
        self.sheet: list[tuple[Tensor, Tensor, Tensor]] = []  # (images, probabilities, labels) of the first batches

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = tensorboard_logger(trainer)
        self.active = logger is not None
        self.writer = logger.experiment if self.active and trainer.is_global_zero else None
        self.confmat = MulticlassConfusionMatrix(pl_module.hparams.num_classes)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.writer is None or batch_idx or trainer.current_epoch:
            return
        x, y = batch[0] if isinstance(batch[0], (list, tuple)) else batch  # a steps_per_execution list: its first
        titles = [pl_module.class_names[i] for i in y[: self.max_images].tolist()]
        self._write("train/sample_inputs", image_grid_figure(x[: self.max_images].cpu(), titles), trainer)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_confmat(pl_module)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Tensor, batch, batch_idx: int, *_
    ) -> None:
        if self.active and not trainer.sanity_checking:
            self.confmat.update(outputs, batch[1])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active and not trainer.sanity_checking:
            self._log_confusion("val", trainer, pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_confmat(pl_module)
        self.wrong_images, self.wrong_titles, self.sheet = [], [], []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Tensor, batch, batch_idx: int, *_
    ) -> None:
        if not self.active:
            return
        x, y = batch
        self.confmat.update(outputs, y)
        if self.writer is None:
            return
        room = self.sheet_images - sum(len(part[0]) for part in self.sheet)
        if room > 0:  # test_step returns only the argmax: a forward pass over these few images gives their softmax
            self.sheet.append((x[:room].cpu(), pl_module(x[:room]).softmax(dim=1).cpu(), y[:room].cpu()))
        room = self.max_images - len(self.wrong_titles)
        if room > 0:
            wrong = (outputs != y).nonzero().flatten()[:room]
            names = pl_module.class_names
            self.wrong_images.append(x[wrong].cpu())
            self.wrong_titles += [
                f"{names[p]} / {names[t]}" for p, t in zip(outputs[wrong].tolist(), y[wrong].tolist(), strict=True)
            ]

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active:
            return
        self._log_confusion("test", trainer, pl_module)
        if self.writer is None:
            return
        if self.wrong_titles:
            self._write(
                "test/misclassified", image_grid_figure(torch.cat(self.wrong_images), self.wrong_titles), trainer
            )
        if self.sheet:
            images, probs, labels = (torch.cat(parts) for parts in zip(*self.sheet, strict=True))
            sheet = prediction_sheet_figure(images, probs, list(pl_module.class_names), labels.tolist())
            self._write("test/predictions", sheet, trainer)
        self.wrong_images, self.wrong_titles, self.sheet = [], [], []

    def _write(self, tag: str, figure: Image.Image, trainer: L.Trainer) -> None:
        write_image(self.writer, tag, figure, trainer.global_step)

    def _reset_confmat(self, pl_module: L.LightningModule) -> None:
        # on the model's device here, not in `setup`: Lightning moves the model to a GPU only after `setup`
        self.confmat = self.confmat.to(pl_module.device)
        self.confmat.reset()

    def _log_confusion(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # compute() gathers every rank's counts (a collective): all ranks call it, only rank 0 draws and writes
        confmat, names = self.confmat.compute().cpu(), list(pl_module.class_names)
        self.confmat.reset()
        if self.writer is None:
            return
        title = f"{stage} confusion matrix, epoch {trainer.current_epoch}"
        self._write(f"{stage}/confusion_matrix", confusion_matrix_figure(confmat, names, title), trainer)
        pairs = most_confused(confmat, names, self.top_confused)
        # Markdown list: TensorBoard's text plugin renders it, one pair per line
        self.writer.add_text(f"{stage}/most_confused", "\n".join(f"- {p}" for p in pairs), trainer.global_step)


def write_image(writer: SummaryWriter, tag: str, figure: Image.Image, step: int) -> None:
    """The figure in TensorBoard's IMAGES at `step`, where add_image writes (torch 2.14's SummaryWriter; its private
    _get_file_writer reopens the file that the logger closed after `fit`, for a test that follows); pinned by
    tests/project/test_private_members.py."""
    writer._get_file_writer().add_summary(image_summary(tag, figure), step)


def image_summary(tag: str, figure: Image.Image) -> Summary:
    """The figure as TensorBoard's image summary, a PNG at zlib level 1 (SummaryWriter.add_image would convert the
    pixels to float and back, and compress harder); a palette image stays one."""
    from tensorboard.compat.proto.summary_pb2 import Summary  # here, not at import: the CLI imports the callbacks

    png, figure = io.BytesIO(), figure.convert("RGB") if figure.mode not in ("RGB", "P") else figure
    figure.save(png, format="PNG", compress_level=1)
    image = Summary.Image(height=figure.height, width=figure.width, colorspace=3, encoded_image_string=png.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])  # colorspace 3: RGB
