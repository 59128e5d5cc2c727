"""The network's weights in TensorBoard, once per epoch: each Dense kernel and bias as a histogram (HISTOGRAMS and
DISTRIBUTIONS tabs, Keras' `TensorBoard(histogram_freq=1)`), and the first Dense kernel as one 28 × 28 tile per unit
(IMAGES): what each hidden unit looks for, and what L1 does to it.

trainer = L.Trainer(logger=TensorBoardLogger("runs"), callbacks=[WeightHistograms(), HiddenUnitsImage()])

Tags are `weights/<Keras layer>/kernel`, `weights/<Keras layer>/bias` (the names `model.summary()` prints: `dense`,
`dense_1`, ...) and `weights/dense/units`; step = epoch, as Keras. (Under `weights/`: TensorBoard's Time Series sorts
its cards by tag, and `dense/...` would come before Keras' `epoch_accuracy` and `epoch_loss`.)
With another logger, or none, or a model without a DenseStack, they do nothing.
"""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from fashion_lab.callbacks import image_summary
from fashion_lab.plots import dense_units_figure
from fashion_lab.summary import find_net, keras_modules


def _writer(trainer: L.Trainer):
    """The SummaryWriter of the run's TensorBoard logger, on rank 0; None elsewhere or without one."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    return logger.experiment if logger is not None and trainer.is_global_zero else None


def dense_layers(pl_module: L.LightningModule) -> list[tuple[str, nn.Linear]]:
    """(Keras name, module) of each Dense layer of the model's DenseStack, in order; none without one."""
    net = find_net(pl_module)
    return [(name, module) for name, kind, module in keras_modules(net) if kind == "Dense"] if net else []


class _EpochCallback(L.Callback):
    """A callback that only acts at epoch ends, and costs nothing per optimizer step."""

    # Lightning calls each callback's hooks whether overridden or not, ~2 µs each: in the steps_per_execution fast
    # path three per optimizer step (22,500 calls in a seed fit). Lightning 2.6's _call_callback_hooks skips a hook
    # that is not callable (pinned by tests/test_private_members.py).
    on_before_backward = on_after_backward = on_before_optimizer_step = None


class WeightHistograms(_EpochCallback):
    """Keras' `TensorBoard(histogram_freq=1)`: every Dense kernel and bias as a histogram at the end of each
    training epoch, step = epoch (TensorBoard's HISTOGRAMS and DISTRIBUTIONS tabs)."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _writer(trainer)
        if writer is None:
            return
        for name, module in dense_layers(pl_module):
            for kind, weight in (("kernel", module.weight), ("bias", module.bias)):
                if weight is not None:
                    # torch's (out, in) is Keras' kernel transposed; a histogram does not care
                    # 30 buckets: tf.summary.histogram's default, what Keras' callback writes
                    writer.add_histogram(f"weights/{name}/{kind}", weight.detach(), trainer.current_epoch, bins=30)


class HiddenUnitsImage(_EpochCallback):
    """The first Dense layer's kernel at the end of each training epoch, one 28 × 28 tile per unit (the seed's 128
    hidden units), as `weights/dense/units` in TensorBoard's IMAGES: red pixels raise the unit, blue ones lower it,
    the grey-white centre of the colour map is a weight of 0, on one scale per epoch (±the 99th percentile of |w|,
    shown below).

    The tile is the model's `example_input_array` image (H, W) when the layer takes H·W inputs, else a square.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer, layers = _writer(trainer), dense_layers(pl_module)
        if writer is None or not layers:
            return
        name, first = layers[0]
        inputs = first.in_features
        example = getattr(pl_module, "example_input_array", None)
        tile = tuple(example.shape[-2:]) if example is not None and example.shape[-2:].numel() == inputs else None
        side = math.isqrt(inputs)
        if tile is None and side * side != inputs:
            return  # neither an image nor a square: no tiles to draw
        figure = dense_units_figure(first.weight, tile or (side, side))
        # the file writer's add_summary, as TensorBoardFigures writes its figures (pinned in test_private_members)
        writer._get_file_writer().add_summary(image_summary(f"weights/{name}/units", figure), trainer.current_epoch)
