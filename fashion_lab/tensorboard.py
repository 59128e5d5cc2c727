"""TensorBoard laid out as Keras' TensorBoard callback lays it out, so that its first screen is the learning curves.

trainer = L.Trainer(logger=KerasTensorBoardLogger(".", log_graph=True))     # the CLI's logger

Keras' callback (keras/src/callbacks/tensorboard.py) writes two runs, `train` and `validation`, with the same tags
`epoch_loss` and `epoch_accuracy` at step = epoch: TensorBoard then draws each as one chart with both lines, and
sorts `epoch_accuracy`, `epoch_loss` first on its Time Series dashboard. The Lightning names stay what code reads
(`callback_metrics["val/acc"]`, checkpoint monitors); only the event files follow Keras.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor

from fashion_lab.runs import RunLogger

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

# Lightning metric -> (Keras' sub-run, Keras' tag): what keras.callbacks.TensorBoard writes for fit's logs
KERAS_TAGS = {
    "train/loss": ("train", "epoch_loss"),
    "train/acc": ("train", "epoch_accuracy"),
    "val/loss": ("validation", "epoch_loss"),
    "val/acc": ("validation", "epoch_accuracy"),
}


def tensorboard_logger(trainer: L.Trainer) -> TensorBoardLogger | None:
    """The trainer's first TensorBoard logger (this one, or Lightning's own), or None."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def tensorboard_writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the run's TensorBoard logger, on rank 0; None elsewhere or without one."""
    logger = tensorboard_logger(trainer)
    return logger.experiment if logger is not None and trainer.is_global_zero else None


class KerasTensorBoardLogger(RunLogger):
    """A RunLogger (TensorBoard, one `version_N` folder per run) that writes Keras' layout.

    - `train/loss`, `train/acc` go to the sub-run `train`, `val/loss`, `val/acc` to `validation`, as `epoch_loss`
      and `epoch_accuracy`: one chart each, training and validation overlaid.
    - What `self.log` records is written at step = epoch, Keras' x axis, and Lightning's own `epoch` scalar (the x
      axis it would need otherwise) is dropped. Other metrics (`val/balanced_acc`, `test/acc`, ...) keep their
      names in the run's own folder, on the same epoch axis. A metric logged with its own step (the learning rate
      per step) keeps that step.

    Metrics recorded per step with `self.log(on_step=True)` would share their epoch's step: log those with
    `logger.log_metrics(..., step=...)`. MLPClassifier logs only per epoch. Its arguments are TensorBoardLogger's.
    """

    _runs: dict[str, SummaryWriter] | None = None  # Keras' sub-runs, opened when first written
    _graph_logged = False  # Lightning asks at every stage: a test after fit would write the same graph again

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float | Tensor], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)  # Lightning adds it to every record of `self.log`
        step = int(epoch) if epoch is not None else step
        for key in [k for k in metrics if k in KERAS_TAGS]:
            run, tag = KERAS_TAGS[key]
            value = metrics.pop(key)
            self.run(run).add_scalar(tag, value.item() if isinstance(value, Tensor) else value, step)
        if metrics:
            super().log_metrics(metrics, step)

    @rank_zero_only
    def log_graph(self, model: L.LightningModule, input_array: Tensor | None = None) -> None:
        if self._graph_logged:
            return
        with warnings.catch_warnings():
            # TensorBoard's add_graph traces with torch.jit.trace, which torch 2.14 deprecates; nothing to act on
            warnings.filterwarnings("ignore", r"`torch\.jit\.trace(_method)?` is deprecated", FutureWarning)
            super().log_graph(model, input_array)
        self._graph_logged = True

    def run(self, name: str) -> SummaryWriter:
        """The SummaryWriter of the sub-run `name` (`train`, `validation`), a folder in the run's own."""
        from torch.utils.tensorboard import SummaryWriter  # imported by the logger's own writer when first used

        if self._runs is None:
            self._runs = {}
        if name not in self._runs:
            self._runs[name] = SummaryWriter(os.path.join(self.log_dir, name))
        return self._runs[name]

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_runs": None}  # as Lightning drops its writer: a spawned rank opens its own

    @rank_zero_only
    def save(self) -> None:
        with self._named_errors():
            super().save()
            for writer in (self._runs or {}).values():
                writer.flush()  # as the run's own writer: a running TensorBoard shows each epoch as it ends

    @rank_zero_only
    def finalize(self, status: str) -> None:
        with self._named_errors():
            for writer in (self._runs or {}).values():
                writer.close()  # a SummaryWriter reopens a new events file when written again (a test after fit)
            super().finalize(status)

    @contextlib.contextmanager
    def _named_errors(self) -> Iterator[None]:
        """TensorBoard's writer thread fails without naming a file (a full disk): name the run's folder."""
        try:
            yield
        except OSError as e:
            if e.filename:
                raise
            raise OSError(e.errno, e.strerror, self.log_dir) from e
