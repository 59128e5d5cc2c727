"""Keras' `steps_per_execution` for a LightningModule: the model takes K optimizer steps per training batch.

A data module with `steps_per_execution = K > 1` hands over lists of K mini-batches (`fashion_lab.data`), so the
framework's per-step cost, larger than this network's whole step, is paid once per list. The updates are the same as
K plain batches: the same order, the same optimizer, clipping and schedule; the data module also tells its
`steps_per_epoch` (mini-batches), which a schedule over the whole run counts. The model reads K from the attached
data module in the `setup` hook; without such a data module (plain dataloaders, or K = 1) it is a standard
automatic-optimization LightningModule.

A subclass provides `train_loss(x, y)` (the loss to minimise, with its bookkeeping) and `after_update()` (Keras'
constraints, applied after every optimizer update).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from fashion_lab.errors import ConfigError
from fashion_lab.keras.schedules import ReduceLROnPlateau

Batch = tuple[Tensor, Tensor]
PLATEAU_MONITOR = "val/loss"  # Keras' ReduceLROnPlateau default monitor, val_loss


class NoStepHooks:
    """A mixin for a callback that does nothing inside an optimizer step: Lightning then makes no call into it there.

    Lightning calls each callback's hooks whether overridden or not, ~2 µs each: in the steps_per_execution fast
    path three per optimizer step (22,500 calls in a seed fit). Lightning 2.6's _call_callback_hooks skips a hook
    that is not callable (pinned by tests/project/test_private_members.py).
    """

    on_before_backward = on_after_backward = on_before_optimizer_step = None


class StepsPerExecution(L.LightningModule):
    """A LightningModule whose training step also takes a list of mini-batches: one optimizer step for each."""

    # Keras' steps_per_execution of the run's data module, set in `setup` and kept after the run: Lightning's
    # `trainer.global_step` counts manual or automatic steps by `automatic_optimization`
    steps_per_execution: int = 1

    def train_loss(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def after_update(self) -> None:
        """Called after every optimizer update, in either path."""

    def setup(self, stage: str) -> None:
        """Take the attached data module's steps_per_execution (lists of mini-batches), else 1; refuse a fit whose
        Trainer options cannot act inside a list."""
        self.steps_per_execution = getattr(self.trainer.datamodule, "steps_per_execution", 1)
        if stage == "fit" and self.steps_per_execution > 1:
            self._refuse_loop_options()

    @property
    def automatic_optimization(self) -> bool:
        """Lightning's automatic optimization, except for steps_per_execution lists, whose steps the model takes."""
        return self.steps_per_execution == 1

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        """The loss of an `(x, y)` batch; a list of K mini-batches (steps_per_execution) takes K optimizer steps."""
        if not self.automatic_optimization:
            return self._execute(batch)
        if isinstance(batch[0], (list, tuple)):
            raise ConfigError(
                "the training batch is a list of mini-batches, but no data module with steps_per_execution is "
                "attached. Fix: pass the data module to fit(..., datamodule=dm), or use steps_per_execution=1."
            )
        return self.train_loss(*batch)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.after_update()  # automatic optimization: Keras constrains right after each update

    def _execute(self, batch: list[Batch]) -> Tensor:
        opt = self.optimizers()
        schedulers = [c.scheduler for c in self.trainer.lr_scheduler_configs if c.interval == "step"]
        # Lightning checks max_steps only between lists; fast_dev_run (max_steps=1) still runs one whole list
        losses, max_steps = [], -1 if self.trainer.fast_dev_run else self.trainer.max_steps
        for x, y in batch:  # kept as lean as a hand-written loop: no host sync, no logging in here
            if 0 <= max_steps <= self.trainer.global_step:
                break
            loss = self.train_loss(x, y)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
            self.after_update()
            for scheduler in schedulers:
                scheduler.step()
            losses.append(loss.detach())
        return torch.stack(losses).mean()  # for callbacks (e.g. the NaN guard)

    def step_epoch_schedulers(self) -> None:
        """Lightning steps epoch schedulers only in automatic optimization: with lists, the model steps them here."""
        if self.automatic_optimization:
            return
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == "epoch" and isinstance(config.scheduler, ReduceLROnPlateau):
                config.scheduler.step(self._monitored(PLATEAU_MONITOR))
            elif config.interval == "epoch":
                config.scheduler.step()

    def plateau_config(self, scheduler: ReduceLROnPlateau) -> dict:
        """The lr_scheduler config of a ReduceLROnPlateau: a list's steps step it here (Lightning drops `monitor`)."""
        monitor = {"monitor": PLATEAU_MONITOR} if self.automatic_optimization else {}
        return {"scheduler": scheduler, "interval": "epoch", **monitor}

    def total_optimizer_steps(self) -> int:
        """Optimizer steps in this fit (what a Keras schedule counts), in either path."""
        trainer, k = self.trainer, self.steps_per_execution
        lists = trainer.estimated_stepping_batches  # sets num_training_batches (lists, with steps_per_execution)
        if k == 1:
            return int(lists)
        if trainer.max_epochs is None or trainer.max_epochs < 0:
            raise ConfigError("a schedule over the whole run needs max_epochs or max_steps; or set decay_steps.")
        # the data module counts its mini-batches: the last list of an epoch may be short
        per_epoch = min(trainer.datamodule.steps_per_epoch, trainer.num_training_batches * k)
        total = per_epoch * trainer.max_epochs
        return min(total, trainer.max_steps) if trainer.max_steps >= 0 else total

    def _monitored(self, name: str) -> Tensor:
        value = self.trainer.callback_metrics.get(name)
        if value is None:
            raise ConfigError(
                f"lr_schedule='reduce_on_plateau' monitors {name}, which this run does not log (no validation set?). "
                "Fix: keep a validation split (--data.val_split 0.2), or choose another lr_schedule."
            )
        return value

    def _refuse_loop_options(self) -> None:
        """Name the Keras option that does what a Trainer option cannot do inside a steps_per_execution list."""
        trainer, k = self.trainer, self.steps_per_execution
        if trainer.gradient_clip_val:
            keras = "clipvalue" if trainer.gradient_clip_algorithm == "value" else "global_clipnorm"
            option, fix = f"gradient_clip_val={trainer.gradient_clip_val}", f"{keras}={trainer.gradient_clip_val}"
        elif trainer.accumulate_grad_batches > 1:
            option = f"accumulate_grad_batches={trainer.accumulate_grad_batches}"
            fix = f"gradient_accumulation_steps={trainer.accumulate_grad_batches}"
        else:
            return
        name = type(self).__name__
        raise ConfigError(
            f"Trainer({option}) cannot act inside the data's steps_per_execution={k} lists. Fix: use the model's "
            f"Keras option {name}({fix}) (--model.{fix.replace('=', ' ')}), or steps_per_execution=1."
        )
