"""Under DDP as lightning-hydra-template's `trainer=ddp_sim` runs it (2 CPU processes, ddp_spawn, its tests'
fractions limit_train_batches=0.01, limit_val_batches=0.1, limit_test_batches=0.1) with the eval_batch_size of
configs/lightning-hydra-template: no metric draws Lightning's `sync_dist` advice (they are reduced already), every
rank logs the same numbers; and a fraction that leaves no batch (the default 1024 there) is refused naming
eval_batch_size."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fashion_lab import ConfigError, FashionMNISTDataModule, MLPClassifier
from tests.helpers.commands import run_command
from tests.helpers.trainer import make_trainer

SCRIPT = """
import json
from pathlib import Path
import lightning as L
from fashion_lab import FashionMNISTDataModule, MLPClassifier

class RankMetrics(L.Callback):
    def on_fit_end(self, trainer, pl_module):
        metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
        Path(f"rank{trainer.global_rank}.json").write_text(json.dumps(metrics))

if __name__ == "__main__":
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, limit_train_batches=0.01,
        limit_val_batches=0.1, limit_test_batches=0.1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[RankMetrics()],
    )
    # Debian's copy; 256 as configs/lightning-hydra-template/data/fashion_mnist.yaml
    model, dm = MLPClassifier(), FashionMNISTDataModule(data_dir="data", download=False, eval_batch_size=256)
    trainer.fit(model, dm)
    fit = {k: v.item() for k, v in trainer.callback_metrics.items()}
    (test,) = trainer.test(model, dm, verbose=False)
    print(json.dumps({"fit": fit, "test": test}))
"""


@pytest.mark.slow
@pytest.mark.real_data
def test_template_ddp_sim_fractions_run_without_sync_dist_advice(tmp_path: Path) -> None:
    (tmp_path / "ddp_sim.py").write_text(SCRIPT, encoding="utf-8")
    result = run_command(["ddp_sim.py"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sync_dist" not in result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"train/loss", "val/loss", "val/acc", "val/acc_best"} <= metrics["fit"].keys()
    assert metrics["fit"]["val/acc_best"] >= metrics["fit"]["val/acc"] > 0.3
    assert {"test/acc", "test/loss", "test/class_acc/Ankle_boot"} <= metrics["test"].keys()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["val/acc_best"] == metrics["fit"]["val/acc_best"]


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_a_fraction_that_leaves_no_batch_names_eval_batch_size(
    fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path, stage: str
) -> None:
    """128 validation and 200 test images in one batch each: a tenth of one batch is none."""
    name = "val" if stage == "validate" else "test"
    trainer = make_trainer(tmp_path, **{f"limit_{name}_batches": 0.1})
    with pytest.raises(ConfigError) as e:
        getattr(trainer, stage)(MLPClassifier(), fashion(eval_batch_size=1024))
    n = 128 if name == "val" else 200
    assert str(e.value) == (
        f"limit_{name}_batches=0.1 of the 1 {name} batches that each process gets with eval_batch_size=1024 is "
        f"less than one batch. Fix: eval_batch_size {n // 10} or smaller, or limit_{name}_batches 1.0 or more."
    )
    (scores,) = getattr(make_trainer(tmp_path, **{f"limit_{name}_batches": 0.1}), stage)(
        MLPClassifier(), fashion(eval_batch_size=n // 10), verbose=False
    )
    assert f"{name}/acc" in scores  # the batch size it names works
