"""Checkpoints written before the package was layered (commit 86c84c9) and before issue 24's moves (8257e34) still
load, test and resume.

Each fixture is that commit's CLI fit on `write_idx_set(..., n_train=200, n_test=50)` (synthetic MNIST):
    fit --data MNISTDataModule --data.data_dir data --data.download false --data.steps_per_execution 4
        --data.normalize true --model.hidden [1] --model.optimizer sgd --model.lr_schedule cosine_decay
        --trainer.max_epochs 1
so it holds a fast-path run's optimizer and schedule state, the data's mean and std, and flat model hparams.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from fashion_lab import MLPClassifier
from fashion_lab.cli import cli_main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import QUIET
from tests.helpers.paths import FIXTURES

OLD = FIXTURES / "mnist_86c84c9_last.ckpt"
BEFORE_MOVES = FIXTURES / "mnist_8257e34_last.ckpt"  # the same command, with --test_after_fit false
DATA = ["--data", "MNISTDataModule", "--data.data_dir", "data", "--data.download", "false"]


@pytest.fixture
def in_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_idx_set(tmp_path / "data" / "MNIST" / "raw", n_train=200, n_test=50)  # the fixture's data, same seeds
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_old_checkpoint_loads_with_its_settings() -> None:
    model = MLPClassifier.load_from_checkpoint(OLD, weights_only=True)
    hp = model.hparams
    assert (tuple(hp.hidden), hp.optimizer, hp.lr_schedule, hp.dropout) == ((1,), "sgd", "cosine_decay", 0.2)
    assert model.net.dense.weight.shape == (1, 784) and model.net.logits.weight.shape == (10, 1)
    checkpoint = torch.load(OLD, map_location="cpu", weights_only=True)
    state = model.state_dict()
    for name, w in checkpoint["state_dict"].items():
        assert torch.equal(state[name], w), name
    # it predates the input range: the range its data module's batches had ([0, 1] standardised) is given instead
    mean, std = checkpoint["MNISTDataModule"]["mean"], checkpoint["MNISTDataModule"]["std"]
    assert 0 < mean < 1 and (state["input_low"].item(), state["input_high"].item()) == pytest.approx(
        (-mean / std, (1 - mean) / std)
    )


def test_a_state_dict_without_the_input_range_loads_with_it_unknown() -> None:
    """Plain torch, no Lightning hook: an older state dict loads (strict), the range unknown, no warning ever."""
    old = {k: v for k, v in MLPClassifier().state_dict().items() if not k.startswith("input_")}
    model = MLPClassifier()
    model.load_state_dict(old)
    assert model.input_low.isnan() and model.input_high.isnan()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.eval()(torch.full((2, 1, 28, 28), 255.0))


def test_checkpoint_from_before_the_moves_loads_with_its_settings() -> None:
    model = MLPClassifier.load_from_checkpoint(BEFORE_MOVES, weights_only=True)
    checkpoint = torch.load(BEFORE_MOVES, map_location="cpu", weights_only=True)
    assert (tuple(model.hparams.hidden), model.hparams.optimizer) == ((1,), "sgd")
    state = model.state_dict()
    for name, w in checkpoint["state_dict"].items():
        assert torch.equal(state[name], w), name


@pytest.mark.parametrize("old", [OLD, BEFORE_MOVES], ids=["86c84c9", "8257e34"])
def test_old_checkpoint_tests_and_resumes(in_data_folder: Path, old: Path) -> None:
    cli = cli_main(["test", *DATA, *QUIET, "--ckpt_path", str(old)])
    assert tuple(cli.model.hparams.hidden) == (1,) and 0.0 <= cli.trainer.callback_metrics["test/acc"] <= 1.0
    fit = ["fit", *DATA, *QUIET, "--test_after_fit", "false", "--data.steps_per_execution", "4"]
    cli = cli_main([*fit, "--data.normalize", "true", "--trainer.max_epochs", "2", "--ckpt_path", str(old)])
    # 160 training images / batch 32 = 5 optimizer steps an epoch: epoch 0 came from the checkpoint, epoch 1 ran here
    assert (cli.trainer.current_epoch, cli.trainer.global_step) == (2, 10)
    schedule = cli.trainer.lr_scheduler_configs[0].scheduler
    assert (schedule.last_epoch, schedule.decay_steps) == (10, 5)  # restored: the first run's 5 steps, counted on
