"""fashion_lab: the Keras Fashion-MNIST / Kuzushiji-49 MLP study, done properly in PyTorch Lightning."""

from fashion_lab.callbacks import TensorBoardFigures
from fashion_lab.data import (
    FashionMNISTDataModule,
    ImageDataModule,
    K49DataModule,
    KMNISTDataModule,
    MNISTDataModule,
)
from fashion_lab.model import MLPClassifier, NonFiniteLossError
from fashion_lab.sources import DataError

__all__ = [
    "DataError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "K49DataModule",
    "KMNISTDataModule",
    "MLPClassifier",
    "MNISTDataModule",
    "NonFiniteLossError",
    "TensorBoardFigures",
]
