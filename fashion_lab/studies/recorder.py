"""TrialRecorder: the Lightning callback that reports a fit's epochs to its Optuna trial and keeps what the report
needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import optuna
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix

HIST_RANGE, HIST_BINS = (-0.3, 0.3), 120  # the first Dense kernel's histogram, kept per trial for the report


def scores_from_test(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A test's own metrics by their short names; per-class and other nested names (test/x/y) are left out.

    >>> scores_from_test({"test/acc": 0.875, "test/loss": 0.5, "test/recall/shirt": 0.25, "val/acc": 0.75})
    {'acc': 0.875, 'loss': 0.5}
    """
    return {
        k.removeprefix("test/"): float(v) for k, v in metrics.items() if k.startswith("test/") and k.count("/") == 1
    }


class TrialRecorder(L.Callback):
    """Report each epoch's validation metric to an Optuna trial, which may prune the fit, and keep what a study
    report needs: per-epoch train/validation loss and accuracy; at test, the confusion matrix and the first Dense
    kernel (the tested weights).

    Args:
        trial: the Optuna trial this fit is.
        monitor: the validation metric reported each epoch (val/acc; val/balanced_acc for imbalanced classes).
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val/acc") -> None:
        self.trial, self.monitor = trial, monitor
        self.epochs: dict[int, dict[str, float]] = {}
        self.confmat: MulticlassConfusionMatrix | None = None
        self.kernel: Tensor | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = self._record(trainer, trainer.current_epoch, ("val/loss", "val/acc", self.monitor))
        if value is None:
            return
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.monitor} {value:.4f} at epoch {trainer.current_epoch} is hopeless")

    # The model logs train/* in its on_train_epoch_end, after the callbacks' hook: read them one hook later.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch - 1, ("train/loss", "train/acc"))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch - 1, ("train/loss", "train/acc"))

    def _record(self, trainer: L.Trainer, epoch: int, keys: tuple[str, ...]) -> float | None:
        """Copy `keys` of the epoch's metrics; returns the monitored value (None if not logged)."""
        metrics = trainer.callback_metrics
        if epoch >= 0:
            self.epochs.setdefault(epoch, {}).update({k: float(metrics[k]) for k in keys if k in metrics})
        return float(metrics[self.monitor]) if self.monitor in keys and self.monitor in metrics else None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.confmat = MulticlassConfusionMatrix(pl_module.hparams.num_classes).to(pl_module.device)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Tensor, batch, batch_idx: int, *_
    ) -> None:
        self.confmat.update(outputs, batch[1])  # the model's test_step returns its predictions

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        first_dense = next(m for m in pl_module.modules() if isinstance(m, nn.Linear))
        self.kernel = first_dense.weight.detach().cpu().clone()

    def curves(self) -> dict[str, list[float | None]]:
        """{"epoch": [0, 1, ...], "train/loss": [...], "val/loss": [...], ...}; None where an epoch has no value."""
        epochs = sorted(self.epochs)
        keys = sorted({k for row in self.epochs.values() for k in row})
        return {"epoch": epochs, **{k: [self.epochs[e].get(k) for e in epochs] for k in keys}}

    def weights(self) -> dict[str, Any]:
        """Histogram of the tested first Dense kernel, and its share of |w| < 1e-3 (what L1 does and L2 does not)."""
        counts = torch.histc(self.kernel, bins=HIST_BINS, min=HIST_RANGE[0], max=HIST_RANGE[1])
        near_zero = (self.kernel.abs() < 1e-3).float().mean().item()
        return {"counts": counts.long().tolist(), "range": list(HIST_RANGE), "near_zero": near_zero}
