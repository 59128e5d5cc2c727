"""Keras' `TensorBoard(histogram_freq=1)`: each Dense kernel and bias as a histogram once per epoch (TensorBoard's
HISTOGRAMS and DISTRIBUTIONS tabs), named as `model.summary()` names the layers.

trainer = L.Trainer(logger=TensorBoardLogger("runs"), callbacks=[WeightHistograms()])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
import torch
from torch import Tensor

from fashion_lab.steps_per_execution import NoStepHooks
from fashion_lab.summary import dense_layers
from fashion_lab.tensorboard import tensorboard_writer

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def write_histogram(writer: SummaryWriter, tag: str, values: Tensor, step: int, bins: int = 30) -> None:
    """What `writer.add_histogram(tag, values, step, bins=bins)` writes, computed by torch rather than numpy.

    add_histogram's `values.dot(values)` is an OpenBLAS call: numpy's OpenBLAS threads then spin on the cores that
    torch's threads need next, and the first torch op after it (FiniteGuard's check before each checkpoint) waited
    20-25 ms on 2 cores. The buckets are add_histogram's: numpy's equal ones from the minimum to the maximum (a
    constant ± 0.5), those outside the filled ones dropped, after an empty one whose upper limit is the lowest edge.
    """
    values = values.detach().flatten().double()
    low, high = values.min().item(), values.max().item()
    edges = (low - 0.5, high + 0.5) if low == high else (low, high)
    counts = torch.histc(values, bins, *edges)
    filled = counts.nonzero().flatten()
    start, end = filled[0].item(), filled[-1].item() + 1
    writer.add_histogram_raw(
        tag, low, high, values.numel(), values.sum().item(), (values * values).sum().item(),
        bucket_limits=torch.linspace(*edges, bins + 1, dtype=torch.float64)[start : end + 1].tolist(),
        bucket_counts=[0, *counts[start:end].tolist()],
        global_step=step,
    )  # fmt: skip


class WeightHistograms(NoStepHooks, L.Callback):
    """Every Dense kernel and bias as a histogram at the end of each training epoch, step = epoch, as Keras'
    `TensorBoard(histogram_freq=1)` writes them: `weights/dense/kernel`, `weights/dense/bias`, `weights/dense_1/...`
    (Keras' layer names; under `weights/`, as TensorBoard's Time Series sorts its cards by tag and `dense/...` would
    come before Keras' `epoch_accuracy` and `epoch_loss`). With another logger, or none, it does nothing."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        for name, module in dense_layers(pl_module):
            for kind, weight in (("kernel", module.weight), ("bias", module.bias)):
                if weight is not None:
                    # torch's (out, in) is Keras' kernel transposed; a histogram does not care.
                    # 30 buckets: tf.summary.histogram's default, what Keras' callback writes
                    write_histogram(writer, f"weights/{name}/{kind}", weight, trainer.current_epoch, bins=30)
