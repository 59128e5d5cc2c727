"""A `fit` stopped by Ctrl+C (SIGINT), a scheduler (SIGTERM) or killed (SIGKILL) mid-epoch resumes from last.ckpt.

SIGINT and SIGTERM end it with one line naming the signal, the epoch and the step, and the exact command that resumes
(the test runs that command), with the shell's status 130 / 143; SIGKILL leaves no line, and `--ckpt_path last` resumes.

What the resumed run shares with one that never stopped (same seed, CPU): everything. last.ckpt is written at the end
of each epoch's validation and holds the weights, Adam's moments, the epoch and step; the data module's EpochShuffler
draws epoch e's order from `seed + e`; the model saves the global torch RNG state (the dropout masks) in the checkpoint
and sets it again in `on_train_start`, and the training DataLoader has its own generator, so starting an epoch draws
nothing from that RNG. Without those two, the resumed run drops different units from epoch 1 on and ends with other
weights (max |Δw| ≈ 0.02 after 2 epochs here). With them, the final weights and validation numbers are equal.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fashion_lab.cli import exit_status
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import QUIET, SYNTHETIC, run_cli

# 4,000 training images in plain batches of 32 (125 steps): an epoch lasts seconds, long enough to land a signal in
FIT = [
    "fit",
    *SYNTHETIC,
    *QUIET,
    *("--data.steps_per_execution", "1", "--trainer.max_epochs", "3", "--test_after_fit", "false"),
]
STEPS_PER_EPOCH = 125


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fashion_lab.cli", *args]


def new_workdir(folder: Path) -> Path:
    write_idx_set(folder / "data", n_train=5000, n_test=50)
    return folder


def last_ckpt(folder: Path) -> Path:
    return folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def final_val(folder: Path) -> dict[str, float]:
    """The last logged val/acc and val/loss of the run in version_0 (all the files of its Keras `validation` run)."""
    values = {}
    for events in sorted((folder / "lightning_logs" / "version_0" / "validation").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag, key in (("epoch_accuracy", "val/acc"), ("epoch_loss", "val/loss")):
            if tag in acc.Tags()["scalars"]:
                last = max(acc.Scalars(tag), key=lambda s: s.step)
                if last.step >= values.get(key, (-1, 0))[0]:
                    values[key] = (last.step, last.value)
    return {tag: value for tag, (_, value) in values.items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = new_workdir(tmp_path_factory.mktemp("uninterrupted"))
    result = run_cli(FIT, folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_fit_resumes_as_if_never_stopped(tmp_path: Path, sig: signal.Signals, uninterrupted: Path) -> None:
    folder = new_workdir(tmp_path)
    proc = subprocess.Popen(cli(*FIT), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not last_ckpt(folder).exists() and proc.poll() is None:  # epoch 0 done: epoch 1 is starting
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    resume = [*FIT, "--ckpt_path", "last"]
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # one line, no traceback, and the shell's status: 128 + the signal's number
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], stderr[-3000:]
        assert "Traceback" not in stderr and "Detected KeyboardInterrupt" not in stderr, stderr[-3000:]
        (line,) = [x for x in stderr.splitlines() if f"stopped by {sig.name}" in x]
        # epoch 0 only if the signal beat the epoch counter, in the moment between last.ckpt and epoch 1
        epoch, step = map(int, re.match(rf"fit stopped by {sig.name} at epoch (\d+), step (\d+)\. ", line).groups())
        assert epoch in (0, 1) and STEPS_PER_EPOCH <= step < 3 * STEPS_PER_EPOCH, line
        command = shlex.split(line.split("Resume from its last finished epoch: ")[1])
        assert command[:3] == ["python", "-m", "fashion_lab.cli"], line
        assert command[3:] == [*FIT, "--ckpt_path", "lightning_logs/version_0/checkpoints/last.ckpt"], line
        resume = command[3:]  # the user's next step: the printed command, exactly
    saved = torch.load(last_ckpt(folder), weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, STEPS_PER_EPOCH)  # the interrupted epoch 1 left nothing
    names = sorted(p.name for p in last_ckpt(folder).parent.iterdir())
    assert names[-1] == "last.ckpt" and all(n.endswith(".ckpt") and not n.startswith(".") for n in names), names

    resumed = run_cli(resume, folder)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (folder / "lightning_logs" / "version_1").exists()  # continued in the interrupted run's folder
    ours, theirs = (torch.load(last_ckpt(f), weights_only=True) for f in (folder, uninterrupted))
    assert (ours["epoch"], ours["global_step"]) == (2, 3 * STEPS_PER_EPOCH)
    for name, weight in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][name], weight, rtol=0, atol=1e-6, msg=name)
    expected = final_val(uninterrupted)
    assert expected.keys() == {"val/acc", "val/loss"}
    got = final_val(folder)
    assert got == pytest.approx(expected, abs=1e-6), (got, expected)


def test_sigterm_under_slurm_auto_requeue_exits_0() -> None:
    """Lightning's SLURM auto-requeue requeues the job itself and expects SIGTERM to end it with status 0."""

    def trainer(*plugins) -> L.Trainer:
        return L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, plugins=list(plugins))

    plain, requeue, no_requeue = trainer(), trainer(SLURMEnvironment()), trainer(SLURMEnvironment(auto_requeue=False))
    assert [exit_status(signal.SIGTERM, t) for t in (plain, requeue, no_requeue)] == [143, 0, 143]
    assert [exit_status(signal.SIGINT, t) for t in (plain, requeue, no_requeue)] == [130, 130, 130]
