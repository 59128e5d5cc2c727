"""Callbacks: TensorBoard figures (confusion matrices, the most-confused pairs, sample inputs, misclassified test
images, the TF tutorial's images beside their probability bars), the HPARAMS tab's hyperparameters and results, a NaN
guard, and the RNG state that makes a resumed run exact.

trainer = L.Trainer(logger=TensorBoardLogger("runs"), callbacks=[TensorBoardFigures()])
With another logger, or none, the callback does nothing (training is never slowed or broken by it).
"""

from __future__ import annotations

import io
import math
import os
import time
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from fashion_lab.errors import NonFiniteLossError, check, positive_integer
from fashion_lab.plots import confusion_matrix_figure, image_grid_figure, most_confused, prediction_sheet_figure

if TYPE_CHECKING:
    from tensorboard.compat.proto.summary_pb2 import Summary


class TensorBoardFigures(L.Callback):
    """Every validation epoch (not the sanity check) and at test: `<stage>/confusion_matrix` figure and
    `<stage>/most_confused` text; once: `train/sample_inputs`; at test: `test/misclassified` ("pred / true") and
    `test/predictions`, the TF tutorial's figure: the first test images beside their probability bars, blue when
    right and red when wrong, with the confidence in %.

    Reads the predictions that the model's validation/test steps return, and the model's `class_names`; the
    probabilities of the `test/predictions` images come from one extra forward pass over those few images.
    Each figure is painted with PIL (`fashion_lab.plots`, ~10 ms) and written by the hook that completes it, in the
    run's own thread: a seed `fit` and its test spend ~0.3 s on figures. (Not in a second thread: a parallel torch
    op there, such as make_grid's copy, left every later training step ~2× slower on a 2-core machine.)

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
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
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
        # where add_image writes (torch 2.14's SummaryWriter; its private _get_file_writer reopens the file that the
        # logger closed after `fit`, for a test that follows); pinned by tests/project/test_private_members.py
        self.writer._get_file_writer().add_summary(image_summary(tag, figure), trainer.global_step)

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


def image_summary(tag: str, figure: Image.Image) -> Summary:
    """The figure as TensorBoard's image summary, a PNG at zlib level 1. (SummaryWriter.add_image converts the pixels
    to float and back and compresses at level 6: 2.3× the time, e.g. 24 ms against 10 ms for a grid.)"""
    from tensorboard.compat.proto.summary_pb2 import Summary  # here: importing the callbacks stays 20 ms faster

    png, figure = io.BytesIO(), figure.convert("RGB") if figure.mode != "RGB" else figure
    figure.save(png, format="PNG", compress_level=1)
    image = Summary.Image(height=figure.height, width=figure.width, colorspace=3, encoded_image_string=png.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])  # colorspace 3: RGB


# the HPARAMS tab's metric columns: each a scalar tag, whose last value in the run is the one the tab shows
HP_METRICS = ("hp/best_val_acc", "hp/test_acc", "hp/test_loss", "hp/test_balanced_acc", "hp/epochs", "hp/seconds")


class TensorBoardHParams(L.Callback):
    """TensorBoard's HPARAMS tab for the run: the model's and the data module's hyperparameters, flat, by the names
    the CLI uses (`model.dropout`, `data.batch_size`), with the run's results as metrics: best `val/acc`, the test
    accuracy, loss and balanced accuracy, the epochs run and the wall seconds since `fit` started (a resumed fit
    adds the seconds before the interruption, and its best `val/acc` counts the earlier epochs).

    Lightning's documented way (Lightning-AI/pytorch-lightning #1228, #5101): `log_hyperparams(params, metrics)`
    once, with initial (NaN) values, when training starts, then the same tags logged again as the results are known
    (at the end of `fit`, and at a test after it); the tab reads the last value of each tag. A fit resumed into the
    run it was saved from writes no second session into it. Give the logger `default_hp_metric=False`, else
    Lightning writes its own `hp_metric` session into the run as well. With another logger, or none, the callback
    does nothing.

    Args:
        extra: more columns for the tab, e.g. a study's `{"trial.variant": "mse", "trial.seed": 3}`.
    """

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self.extra = dict(extra or {})
        self.logger: TensorBoardLogger | None = None
        self.start: float | None = None  # perf_counter at the start of fit; None: no fit in this process yet
        self.seconds_before = 0.0  # training seconds of the run before it was resumed here
        self.best_val = math.nan
        self.saved: dict[str, Any] | None = None  # the state of the checkpoint this fit resumes from

    @property
    def state_key(self) -> str:
        return self._generate_state_key(extra=sorted(self.extra))  # two instances with other columns: two states

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self._seconds(), "best_val_acc": self.best_val, "log_dir": self._log_dir()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = state_dict

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
            self.start, self.seconds_before, self.best_val, self.saved = time.perf_counter(), 0.0, math.nan, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        saved, self.saved = self.saved, None  # loaded from the checkpoint after `setup`, before training starts
        if saved is not None:
            self.seconds_before, self.best_val = saved["seconds"], saved["best_val_acc"]
        if self.logger is None or (saved is not None and saved["log_dir"] == self._log_dir()):
            return  # resumed into its own run: that run's session holds these hyperparameters already
        params = {f"model.{k}": v for k, v in pl_module.hparams.items()}
        if trainer.datamodule is not None:
            params |= {f"data.{k}": v for k, v in trainer.datamodule.hparams.items()}
        # jsonargparse's `_class_path` and `_instantiator`, which LightningCLI keeps in hparams, are not options
        params = {k: v for k, v in params.items() if not k.split(".")[-1].startswith("_")}
        self.logger.log_hyperparams(params | self.extra, dict.fromkeys(HP_METRICS, math.nan))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/acc")
        if self.logger is not None and not trainer.sanity_checking and value is not None:
            self.best_val = float(value) if math.isnan(self.best_val) else max(self.best_val, float(value))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, {"hp/best_val_acc": self.best_val, "hp/epochs": trainer.current_epoch})

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        results = {f"hp/test_{k}": float(metrics[f"test/{k}"]) for k in ("acc", "loss", "balanced_acc")
                   if f"test/{k}" in metrics}  # fmt: skip
        self._log(trainer, results)

    def _log_dir(self) -> str | None:
        """The run's folder, absolute: a fit resumed from another working directory is told apart."""
        return os.path.realpath(self.logger.log_dir) if self.logger is not None else None

    def _seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        """The results so far, and the wall seconds until now (a test after fit counts in the run)."""
        if self.logger is None or self.start is None:  # a test without a fit here: the run's session is elsewhere
            return
        self.logger.log_metrics({**metrics, "hp/seconds": self._seconds()}, step=trainer.global_step)


class FiniteGuard(L.Callback):
    """Stop `fit` when the training loss becomes NaN or infinite, and never write a checkpoint of non-finite weights.

    A run that diverged keeps its last good `last.ckpt`; the error names the epoch, the step and the fix.
    Reads the loss each training step returns (one host sync per Lightning step).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {trainer.current_epoch}, step {trainer.global_step}. "
                "Fix: lower the learning rate (--model.lr), or check the inputs for NaN/inf."
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
            raise NonFiniteLossError(
                f"the weights became NaN or infinite at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                "no checkpoint was written. Fix: lower the learning rate (--model.lr), or check the inputs."
            )


class RNGState(L.Callback):
    """Save torch's global RNG (CPU and CUDA) in checkpoints and restore it on resume, so a resumed run's dropout
    masks continue where the saved run was and its weights equal an uninterrupted run's.

    Lightning restores weights, optimizer, loops and callbacks, not the global RNG. The state is set again in
    `on_train_start`, after the sanity check, whose DataLoader draws a seed from it.
    """

    def __init__(self) -> None:
        self.resume_state: dict | None = None

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():  # dropout masks on a GPU come from CUDA's generators
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.resume_state = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.resume_state is None:
            return
        torch.set_rng_state(self.resume_state["torch"])
        if "cuda" in self.resume_state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.resume_state["cuda"])
        self.resume_state = None
