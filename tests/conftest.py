"""Shared fixtures and helpers: tiny learnable data sets in the official file formats, a fast Trainer, the command
line run as a user runs it, and the `real_data` marker's skip when Debian's Fashion-MNIST is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest

from fashion_lab import FashionMNISTDataModule, K49DataModule
from fashion_lab.synthetic import write_idx_set, write_k49

REPO = Path(__file__).resolve().parents[1]
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist, installed by .ci/run
# The CLI on small synthetic MNIST files in ./data, without progress bar or summary: the arguments most tests share
SYNTHETIC = ["--data", "MNISTDataModule", "--data.data_dir", "data", "--data.download", "false"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
FIT = ["fit", *SYNTHETIC, *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.real_data` also skips the test, with the fix, where the real data set is not installed."""
    if REAL_FASHION.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs {REAL_FASHION}: apt-get install dataset-fashion-mnist")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


def run_command(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` in `cwd` as a user runs it, this checkout first on the path; FASHION_LAB_DEBUG only if given."""
    base = {k: v for k, v in os.environ.items() if k != "FASHION_LAB_DEBUG"}
    env = {**base, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_cli(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python -m fashion_lab.cli ARGS` in `cwd`, as a user runs it."""
    return run_command(["-m", "fashion_lab.cli", *args], cwd, timeout, **env)


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


@pytest.fixture(scope="session")
def fashion_checkpoint(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a 3-epoch CLI fit on the synthetic Fashion-MNIST files, with `normalize` (its statistics saved)."""
    from fashion_lab.cli import cli_main

    folder = tmp_path_factory.mktemp("fashion_fit")
    data = ["--data", "FashionMNISTDataModule", "--data.data_dir", str(fashion_dir), "--data.download", "false"]
    fit = ["fit", *data, "--data.normalize", "true", "--data.steps_per_execution", "4", "--trainer.max_epochs", "3"]
    cli_main([*fit, *QUIET, "--test_after_fit", "false", "--trainer.logger.init_args.save_dir", str(folder)])
    return folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


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


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Where tests were skipped for a missing system package (their reasons say `apt-get install ...`), say the fix
    once, just above pytest's `-ra` list of which tests and why."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "apt-get install" in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped for a missing system package (listed below). "
            "Fix: bash scripts/system-packages.sh --tests, then run pytest again.",
            yellow=True,
            bold=True,
        )
