"""A run's files: checkpoints written whole or not at all, read weights-only, and one `version_N` folder per run
when many start at once in one folder."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from fashion_lab import AtomicCheckpointIO, ConfigError, RunLogger


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
