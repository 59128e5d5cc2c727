"""fashion_lab: the Keras Fashion-MNIST / Kuzushiji-49 MLP study, done properly in PyTorch Lightning."""

from fashion_lab.callbacks import FiniteGuard, RNGState, TensorBoardFigures
from fashion_lab.data import (
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFilesDataModule,
    K49DataModule,
    KMNISTDataModule,
    MNISTDataModule,
)
from fashion_lab.errors import ConfigError, NonFiniteLossError
from fashion_lab.layers import DenseStack
from fashion_lab.model import MLPClassifier
from fashion_lab.runs import AtomicCheckpointIO, RunLogger
from fashion_lab.sources import DataError

__all__ = [
    "AtomicCheckpointIO",
    "ConfigError",
    "DataError",
    "DenseStack",
    "FashionMNISTDataModule",
    "FiniteGuard",
    "ImageDataModule",
    "ImageFilesDataModule",
    "K49DataModule",
    "KMNISTDataModule",
    "MLPClassifier",
    "MNISTDataModule",
    "NonFiniteLossError",
    "RNGState",
    "RunLogger",
    "TensorBoardFigures",
]
