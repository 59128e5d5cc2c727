"""`fit --trainer.strategy ddp --trainer.devices 2` on CPU (gloo) with real Fashion-MNIST, against one process.

What DDP must keep: Lightning swaps the data module's EpochShuffler for a DistributedSamplerWrapper around it and keeps
the DataLoader's `collate_fn` (the steps_per_execution mini-batches), so each rank trains on its own half of the
training split; torchmetrics and `sync_dist` make every logged number the same on both ranks; test accuracy matches a
single-process run. Concurrent downloads into one empty folder: tests/data/test_download.py (DDP itself prepares data on
local rank 0 only, the other rank waits at a barrier).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest

from tests.helpers.commands import QUIET, run_cli

FIT = ["fit", "--trainer.max_epochs", "1", *QUIET, "--trainer.callbacks+=tests.test_ddp.RankProbe"]
# Per-rank batch 16: the two ranks' averaged gradients make the single run's 32-image step, and as many of them
DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--data.batch_size", "16"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_data,
]


class RankProbe(L.Callback):
    """Writes `rank<N>.json`: the mini-batches, samples and sample indices this rank trained on, and its metrics."""

    def __init__(self) -> None:
        self.mini_batches = self.samples = 0
        self.indices: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.indices += list(trainer.train_dataloader.sampler)  # this rank's share, after Lightning's set_epoch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        batches = batch if isinstance(batch[0], (list, tuple)) else [batch]  # steps_per_execution: a list of (x, y)
        self.mini_batches += len(batches)
        self.samples += sum(len(y) for _, y in batches)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        report = {
            "world_size": trainer.world_size,
            "mini_batches": self.mini_batches,
            "samples": self.samples,
            "indices": self.indices,
            "sampler": type(trainer.train_dataloader.sampler).__name__,
            "metrics": {k: v.item() for k, v in trainer.callback_metrics.items()},
        }
        Path(f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def fit(cwd: Path, *extra: str) -> tuple[float, list[dict]]:
    """Run `fit` (then test) in `cwd`; return the printed test accuracy and each rank's probe report."""
    cwd.mkdir()
    result = run_cli([*FIT, *extra], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    tests = [line for line in result.stdout.splitlines() if line.startswith("Test (")]
    assert tests, result.stdout[-2000:]
    accs = {float(line.split(" - acc ")[1].split()[0]) for line in tests}
    assert len(accs) == 1, tests  # each rank prints the synced test accuracy
    reports = [json.loads(p.read_text()) for p in sorted(cwd.glob("rank*.json"))]
    return accs.pop(), reports


def test_ddp_two_processes_split_the_data_and_agree(tmp_path: Path) -> None:
    single_acc, (single,) = fit(tmp_path / "single")
    ddp_acc, ranks = fit(tmp_path / "ddp", *DDP)
    n_train = 48_000  # Fashion-MNIST's 60,000 minus Keras' last 20% for validation
    assert single["world_size"] == 1 and single["samples"] == n_train and single["mini_batches"] == n_train // 32
    assert len(ranks) == 2 and all(r["world_size"] == 2 for r in ranks)
    assert {r["sampler"] for r in ranks} == {"DistributedSamplerWrapper"}
    # each rank: half the samples (in 16-image mini-batches), and the halves are disjoint and complete
    assert [(r["samples"], r["mini_batches"]) for r in ranks] == [(n_train // 2, n_train // 32)] * 2
    halves = [set(r["indices"]) for r in ranks]
    assert [len(h) for h in halves] == [n_train // 2] * 2
    assert not halves[0] & halves[1] and halves[0] | halves[1] == set(range(n_train))
    # every logged metric (losses, accuracies) is reduced over both ranks, so the two agree exactly
    assert ranks[0]["metrics"].keys() == ranks[1]["metrics"].keys() >= {"train/loss", "val/loss", "val/acc"}
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    print(f"test acc: single process {single_acc:.4f}, DDP 2 ranks {ddp_acc:.4f}")
    assert abs(ddp_acc - single_acc) <= 0.01, (ddp_acc, single_acc)
