"""fashion_lab: the Keras Fashion-MNIST / Kuzushiji-49 MLP study, done properly in PyTorch Lightning.

Every name below is imported on first use (PEP 562), so `import fashion_lab.keras` (pure torch) never imports
Lightning. The layers are described in ARCHITECTURE.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_HOMES = {
    "AtomicCheckpointIO": "fashion_lab.runs",
    "ConfigError": "fashion_lab.errors",
    "DataError": "fashion_lab.errors",
    "DenseStack": "fashion_lab.keras.layers",
    "FashionMNISTDataModule": "fashion_lab.data",
    "FiniteGuard": "fashion_lab.callbacks.finite_guard",
    "HiddenUnitsImage": "fashion_lab.callbacks.hidden_units",
    "ImageDataModule": "fashion_lab.data",
    "ImageFilesDataModule": "fashion_lab.picture_files",
    "K49DataModule": "fashion_lab.data",
    "KerasTensorBoardLogger": "fashion_lab.tensorboard",
    "KerasProgressBar": "fashion_lab.callbacks.progress",
    "KerasSummary": "fashion_lab.summary",
    "KMNISTDataModule": "fashion_lab.data",
    "MLPClassifier": "fashion_lab.model",
    "MNISTDataModule": "fashion_lab.data",
    "NonFiniteLossError": "fashion_lab.errors",
    "RNGState": "fashion_lab.callbacks.rng_state",
    "RunLogger": "fashion_lab.runs",
    "TensorBoardFigures": "fashion_lab.callbacks.figures",
    "TensorBoardHParams": "fashion_lab.callbacks.hparams",
    "WeightHistograms": "fashion_lab.callbacks.histograms",
    "keras_summary": "fashion_lab.summary",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """PEP 562: `fashion_lab.MLPClassifier` imports fashion_lab.model on first use, and caches the class here."""
    if name not in _HOMES:
        raise AttributeError(f"module 'fashion_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
