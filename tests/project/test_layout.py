"""The folders are the layers: `fashion_lab.keras` is pure torch (no Lightning), and `fashion_lab` exports its
public names lazily, so importing the Keras layer never pays for (or depends on) Lightning."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fashion_lab
import fashion_lab.keras
from tests.helpers.paths import REPO

PUBLIC = {
    "AtomicCheckpointIO", "ConfigError", "DataError", "DenseStack", "FashionMNISTDataModule", "FiniteGuard",
    "HiddenUnitsImage", "ImageDataModule", "ImageFilesDataModule", "K49DataModule", "KerasProgressBar", "KerasSummary",
    "KerasTensorBoardLogger", "KMNISTDataModule", "MLPClassifier", "MNISTDataModule", "NonFiniteLossError", "RNGState",
    "RunLogger", "TensorBoardFigures", "TensorBoardHParams", "WeightHistograms", "keras_summary",
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


def test_one_callback_per_module_all_exported_by_the_package() -> None:
    """fashion_lab/callbacks/ holds one callback per module; `from fashion_lab.callbacks import X` finds each."""
    import importlib

    import lightning as L

    import fashion_lab.callbacks

    found = {}
    for module in pkgutil.iter_modules(fashion_lab.callbacks.__path__, "fashion_lab.callbacks."):
        defined = importlib.import_module(module.name).__dict__.values()
        found[module.name] = [c.__name__ for c in defined if isinstance(c, type) and issubclass(c, L.Callback)
                              and c.__module__ == module.name]  # fmt: skip
    assert found == {
        "fashion_lab.callbacks.figures": ["TensorBoardFigures"],
        "fashion_lab.callbacks.finite_guard": ["FiniteGuard"],
        "fashion_lab.callbacks.hidden_units": ["HiddenUnitsImage"],
        "fashion_lab.callbacks.histograms": ["WeightHistograms"],
        "fashion_lab.callbacks.progress": ["KerasProgressBar"],
        "fashion_lab.callbacks.hparams": ["TensorBoardHParams"],
        "fashion_lab.callbacks.rng_state": ["RNGState"],
    }
    for names in found.values():
        assert getattr(fashion_lab.callbacks, names[0]) is getattr(fashion_lab, names[0])
