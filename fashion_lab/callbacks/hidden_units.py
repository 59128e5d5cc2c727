"""What the hidden units look for: the first Dense layer's kernel as one 28 × 28 tile per unit, in TensorBoard's
IMAGES once per epoch. No Keras tool shows it; it makes the seed's 100,480 first-layer weights visible, and what L1
or L2 does to them.

trainer = L.Trainer(logger=TensorBoardLogger("runs"), callbacks=[HiddenUnitsImage()])
"""

from __future__ import annotations

import math

import lightning as L

from fashion_lab.callbacks.figures import write_image
from fashion_lab.plots import dense_units_figure
from fashion_lab.steps_per_execution import NoStepHooks
from fashion_lab.summary import dense_layers
from fashion_lab.tensorboard import tensorboard_writer


class HiddenUnitsImage(NoStepHooks, L.Callback):
    """The first Dense layer's kernel at the end of each training epoch, one 28 × 28 tile per unit (the seed's 128
    hidden units), as `weights/dense/units` in TensorBoard's IMAGES, step = epoch: red pixels raise the unit, blue
    ones lower it, the grey-white centre of the colour map is a weight of 0, on one scale per epoch (±the 99th
    percentile of |w|, shown below). With another logger, or none, or a model without a DenseStack, it does nothing.

    The tile is the model's `example_input_array` image (H, W) when the layer takes H·W inputs, else a square.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer, layers = tensorboard_writer(trainer), dense_layers(pl_module)
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
        write_image(writer, f"weights/{name}/units", figure, trainer.current_epoch)
