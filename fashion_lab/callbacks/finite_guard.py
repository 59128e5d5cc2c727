"""Stop a fit whose loss or weights become NaN or infinite, before a checkpoint of them is written."""

from __future__ import annotations

import lightning as L
import torch

from fashion_lab.errors import NonFiniteLossError
from fashion_lab.steps_per_execution import NoStepHooks


class FiniteGuard(NoStepHooks, L.Callback):
    """Stop `fit` when the training loss becomes NaN or infinite, and never write a checkpoint of non-finite weights.

    A run that diverged keeps its last good `last.ckpt`; the error names the epoch, the step and the fix.
    Reads the loss each training step returns (one host sync per Lightning step).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {trainer.current_epoch}, step {trainer.global_step}. "
                "Fix: lower the learning rate (--model.lr), or check the inputs for NaN/inf."
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not all(torch.isfinite(p).all() for p in pl_module.parameters()):
            raise NonFiniteLossError(
                f"the weights became NaN or infinite at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                "no checkpoint was written. Fix: lower the learning rate (--model.lr), or check the inputs."
            )
