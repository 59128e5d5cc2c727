"""Shared fixtures: tiny learnable data sets in the official file formats and a checkpoint trained on one, and the
`real_data` marker's skip when Debian's Fashion-MNIST is not installed. Helpers to import: tests/helpers/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fashion_lab import FashionMNISTDataModule, K49DataModule
from fashion_lab.synthetic import write_idx_set, write_k49
from tests.helpers.commands import QUIET
from tests.helpers.paths import REAL_FASHION


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.real_data` also skips the test, with the fix, where the real data set is not installed."""
    if REAL_FASHION.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs {REAL_FASHION}: apt-get install dataset-fashion-mnist")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


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
