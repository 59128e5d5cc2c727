"""Shared fixtures: tiny learnable data sets in the official file formats, and a fast Trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest

from fashion_lab import FashionMNISTDataModule, K49DataModule
from fashion_lab.synthetic import write_idx_set, write_k49


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic Fashion-MNIST files (640 train, 200 test): one template per class plus noise, easy to learn."""
    folder = tmp_path_factory.mktemp("fashion")
    write_idx_set(folder, n_train=640, n_test=200)
    return folder


@pytest.fixture(scope="session")
def k49_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("k49")
    write_k49(folder, n_train=490, n_test=245)
    return folder


@pytest.fixture
def fashion(fashion_dir: Path) -> Callable[..., FashionMNISTDataModule]:
    """Factory: the Fashion-MNIST module (real class names) reading the synthetic files found first in data_dir."""
    return lambda **kwargs: FashionMNISTDataModule(data_dir=fashion_dir, download=False, **kwargs)


@pytest.fixture
def k49(k49_dir: Path) -> Callable[..., K49DataModule]:
    return lambda **kwargs: K49DataModule(data_dir=k49_dir, download=False, **kwargs)


def make_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    """A quiet CPU Trainer: no progress bar, no checkpoints, no model summary unless asked for."""
    defaults = {
        "accelerator": "cpu",
        "default_root_dir": tmp_path,
        "logger": False,
        "enable_progress_bar": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "max_epochs": 1,
    }
    return L.Trainer(**{**defaults, **kwargs})
