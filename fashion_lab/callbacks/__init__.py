"""Callbacks, one per module: TensorBoard figures, the HPARAMS tab's hyperparameters and results, a NaN guard, the
RNG state that makes a resumed run exact, the weights per epoch (histograms, the hidden units' image) and Keras'
console."""

# isort: off
# in this order, the order `--help` lists them in (jsonargparse lists the subclasses in the order they were defined)
from fashion_lab.callbacks.figures import TensorBoardFigures, image_summary
from fashion_lab.callbacks.hparams import HP_METRICS, TensorBoardHParams
from fashion_lab.callbacks.finite_guard import FiniteGuard
from fashion_lab.callbacks.rng_state import RNGState
from fashion_lab.callbacks.histograms import WeightHistograms
from fashion_lab.callbacks.hidden_units import HiddenUnitsImage
from fashion_lab.callbacks.progress import KerasProgressBar
# isort: on

__all__ = [
    "HP_METRICS",
    "FiniteGuard",
    "HiddenUnitsImage",
    "KerasProgressBar",
    "RNGState",
    "TensorBoardFigures",
    "TensorBoardHParams",
    "WeightHistograms",
    "image_summary",
]
