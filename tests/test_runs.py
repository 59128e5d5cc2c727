"""A run's files: checkpoints written whole or not at all (also under DDP), and one `version_N` per run when many
start at once in one folder.

A checkpoint write is failed part way with a real file-size limit (RLIMIT_FSIZE), set by `FileSizeLimit` below once
epoch 0's checkpoints exist: the write of epoch 1's checkpoint then stops at nine tenths of its size, either with an
error (EFBIG, the way a full disk fails) or with the kernel's SIGXFSZ killing the process mid-write.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from fashion_lab import AtomicCheckpointIO, ConfigError, RunLogger
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import FIT, run_cli, run_command

STEPS = 13  # optimizer steps an epoch: 400 training images (of 500) in batches of 32
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--data.batch_size", "16"]


class FileSizeLimit(L.Callback):
    """From epoch `epoch` on, rank 0 may write no file larger than 9/10 of last.ckpt (RLIMIT_FSIZE): the checkpoint
    write fails, the run's TensorBoard event files (about half a checkpoint after two epochs) do not.

    Args:
        epoch: the epoch whose checkpoint write is to fail.
        kill: let the kernel's SIGXFSZ kill the process mid-write; else the write fails with EFBIG.
    """

    def __init__(self, epoch: int = 1, kill: bool = False) -> None:
        self.epoch, self.kill = epoch, kill

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != self.epoch or not trainer.is_global_zero:
            return
        size = Path(trainer.checkpoint_callback.dirpath, "last.ckpt").stat().st_size  # (trainer.log_dir: collective)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL if self.kill else signal.SIG_IGN)  # Python ignores it
        resource.setrlimit(resource.RLIMIT_FSIZE, (size * 9 // 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files anywhere under `folder`."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".part", ".tmp"))


def failed_write_then_resume(folder: Path, *extra: str, kill: bool) -> None:
    """fit 2 epochs with epoch 1's checkpoint failing halfway; check what is left; resume; check the result."""
    write_idx_set(folder / "data", n_train=500, n_test=20)
    fit = [*FIT, "--data.steps_per_execution", "1", "--trainer.max_epochs", "2", *extra]
    limit = ["--trainer.callbacks+=tests.test_runs.FileSizeLimit", f"--trainer.callbacks.kill={str(kill).lower()}"]
    result = run_cli([*fit, *limit], folder)
    checkpoints = folder / "lightning_logs" / "version_0" / "checkpoints"
    if kill:  # killed in the middle of writing the temporary file: only it is partial
        assert result.returncode == -signal.SIGXFSZ, result.stderr[-3000:]
        assert [p.suffix for p in checkpoints.glob(".*")] == [".part"]
    else:  # the write failed: one line naming the checkpoint and the fix, and the temporary file is gone
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        (error,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert error.startswith("error: File too large while writing a checkpoint (the previous one is intact): ")
        assert error.endswith(".ckpt. Fix: free space there (or lift the file-size limit), then resume with "
                              "--ckpt_path last."), error  # fmt: skip
        assert leftovers(folder) == []
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)  # the previous last.ckpt, whole
    assert (saved["epoch"], saved["global_step"]) == (0, STEPS)
    assert [p.name for p in checkpoints.glob("epoch=1-*")] == []

    resumed = run_cli([*fit, "--ckpt_path", "last"], folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 2 * STEPS)
    assert leftovers(folder) == []  # the resume swept the killed write's temporary file
    assert sorted(p.name for p in (folder / "lightning_logs").iterdir()) == ["version_0"]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["write_error", "killed_mid_write"])
def test_failed_checkpoint_write_keeps_the_previous(tmp_path: Path, kill: bool) -> None:
    failed_write_then_resume(tmp_path, kill=kill)


@pytest.mark.slow
def test_failed_checkpoint_write_under_ddp(tmp_path: Path) -> None:
    """Two CPU ranks: only rank 0 writes, its write fails halfway, rank 1 stops too; resuming under DDP works."""
    failed_write_then_resume(tmp_path, *DDP, kill=False)


def test_atomic_io_refuses_to_load_code(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, tmp_path / "run" / "a.ckpt")
    assert os.listdir(tmp_path / "run") == ["a.ckpt"]
    assert torch.equal(io.load_checkpoint(tmp_path / "run" / "a.ckpt")["state_dict"]["w"], torch.ones(2))
    with pytest.raises(ConfigError, match="weights_only=False would let the checkpoint run code"):
        io.load_checkpoint(tmp_path / "run" / "a.ckpt", weights_only=False)


def test_run_logger_claims_one_folder_per_run(tmp_path: Path) -> None:
    """Eight loggers pick their version at the same instant: eight folders (TensorBoardLogger lists, then creates)."""
    (tmp_path / "runs" / "version_0").mkdir(parents=True)
    barrier = threading.Barrier(8)

    def version(_: int) -> int:
        logger = RunLogger(tmp_path, name="runs")
        barrier.wait()
        return logger.version

    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(version, range(8)))
    assert versions == list(range(1, 9))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [f"version_{v}" for v in range(9)]


def test_run_logger_removes_only_its_own_empty_run(tmp_path: Path) -> None:
    empty, kept = RunLogger(tmp_path), RunLogger(tmp_path)
    assert (empty.version, kept.version) == (0, 1)
    (Path(kept.log_dir) / "checkpoints").mkdir()
    (Path(kept.log_dir) / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    existing = RunLogger(tmp_path, version="version_1")  # e.g. `test` logging into the checkpoint's run
    for logger in (empty, kept, existing):
        logger.finalize("failed")
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_1"]
    RunLogger(tmp_path / "new").finalize("failed")  # never asked for a folder: makes none
    only = RunLogger(tmp_path / "fresh")
    assert only.version == 0
    only.finalize("failed")
    assert list((tmp_path / "fresh").iterdir()) == []  # its lightning_logs/ went too: the logger made it


# Each process imports everything, then waits for the others, so that all four pick their run folder together.
START_TOGETHER = """
import os, sys, time
from pathlib import Path
import fashion_lab.cli
ready, n = Path(sys.argv.pop(1)), int(sys.argv.pop(1))
(ready / str(os.getpid())).touch()
while len(os.listdir(ready)) < n:
    time.sleep(0.001)
fashion_lab.cli.cli_main()
"""


@pytest.mark.slow
def test_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    folder, ready = tmp_path / "work", tmp_path / "ready"
    write_idx_set(folder / "data", n_train=100, n_test=20)
    ready.mkdir()
    dropouts = ["0.1", "0.2", "0.3", "0.4"]

    def fit(dropout: str):
        return run_command(["-c", START_TOGETHER, str(ready), "4", *FIT, "--model.dropout", dropout], folder)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(fit, dropouts))
    assert [r.returncode for r in results] == [0] * 4, [r.stderr[-2000:] for r in results]
    runs = sorted((folder / "lightning_logs").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1", "version_2", "version_3"]
    seen = []
    for run in runs:  # each folder holds one run's files only, and they agree on which run it was
        assert len(list(run.glob("events.out.tfevents.*"))) == 1, sorted(p.name for p in run.iterdir())
        assert len(list((run / "checkpoints").iterdir())) == 2  # best and last
        config = yaml.safe_load((run / "config.yaml").read_text())["model"]["dropout"]
        hparams = float(re.search(r"^dropout: (.+)$", (run / "hparams.yaml").read_text(), re.M).group(1))
        saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["dropout"]
        assert config == hparams == saved, (run.name, config, hparams, saved)
        seen.append(str(config))
    assert sorted(seen) == dropouts
