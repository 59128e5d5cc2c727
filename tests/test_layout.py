"""The folders are the layers: `fashion_lab.keras` is pure torch (no Lightning), and `fashion_lab` exports its
public names lazily, so importing the Keras layer never pays for (or depends on) Lightning."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

from conftest import REPO

import fashion_lab
import fashion_lab.keras

PUBLIC = {
    "AtomicCheckpointIO", "ConfigError", "DataError", "DenseStack", "FashionMNISTDataModule", "FiniteGuard",
    "ImageDataModule", "ImageFilesDataModule", "K49DataModule", "KerasProgressBar", "KerasSummary", "KMNISTDataModule",
    "MLPClassifier", "MNISTDataModule", "NonFiniteLossError", "RNGState", "RunLogger", "TensorBoardFigures",
    "TensorBoardHParams", "keras_summary",
}  # fmt: skip


def test_keras_layer_imports_no_lightning() -> None:
    """Every module of fashion_lab.keras, imported in a fresh interpreter, leaves Lightning unimported."""
    modules = sorted(m.name for m in pkgutil.iter_modules(fashion_lab.keras.__path__, "fashion_lab.keras."))
    assert {"fashion_lab.keras.layers", "fashion_lab.keras.losses", "fashion_lab.keras.optim"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', "
        "'lightning_fabric', 'torchmetrics')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_package_exports_every_public_name_lazily() -> None:
    assert set(fashion_lab.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(fashion_lab, name).__name__ == name
    code = "import sys, fashion_lab; print('lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False"  # `import fashion_lab` alone imports no Lightning either
