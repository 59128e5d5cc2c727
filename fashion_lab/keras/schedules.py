"""Keras 3's learning-rate schedules and its ReduceLROnPlateau callback, as torch schedulers.

A Keras `LearningRateSchedule` is a function of the optimizer's step count, so each is stepped once per optimizer
update; ReduceLROnPlateau is stepped once per epoch with the monitored value. tests/keras/test_optim.py checks them
against real Keras.

>>> w = torch.nn.Parameter(torch.zeros(1))
>>> decay = ExponentialDecay(torch.optim.SGD([w], lr=1.0), decay_steps=2, decay_rate=0.5)
>>> [round(decay.lr_at(step, 1.0), 4) for step in range(4)]  # 0.5 ** (step / 2)
[1.0, 0.7071, 0.5, 0.3536]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

from fashion_lab.errors import Rule, check, check_rules

# Every schedule argument's allowed values, checked here only: by each class below, and by
# `fashion_lab.keras.optim.check_schedule` before the run's length is known (where a `plateau_` option is
# ReduceLROnPlateau's argument of the same name without the prefix)
RANGES: dict[str, Rule] = {
    "decay_steps": (lambda v: isinstance(v, int) and v > 0, "a positive integer"),
    "decay_rate": (lambda v: v > 0, "a positive number"),
    "alpha": (lambda v: 0 <= v <= 1, "0 <= {name} <= 1"),
    "warmup_steps": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "warmup_target": (lambda v: v is None or v > 0, "a positive number, or None (no warm-up)"),
    "factor": (lambda v: 0 < v < 1, "0 < {name} < 1"),
    "patience": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "min_lr": (lambda v: v >= 0, "{name} >= 0"),
}


def check_args(**args: object) -> None:
    """Check schedule arguments, or options (`plateau_factor` is ReduceLROnPlateau's `factor`), by name."""
    check_rules({name: RANGES[name.removeprefix("plateau_")] for name in args}, **args)


class KerasSchedule(LRScheduler):
    """A Keras `LearningRateSchedule`: the learning rate is a function of the optimizer's step count.

    `lr_at(step, initial)` gives the rate for 0-based `step`; `initial` is the group's starting lr (Keras'
    `initial_learning_rate`). Step it once per optimizer call, as Keras counts `iterations`.
    """

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, initial) for initial in self.base_lrs]

    def lr_at(self, step: int, initial: float) -> float:
        raise NotImplementedError


class CosineDecay(KerasSchedule):
    """Keras CosineDecay: optional linear warm-up from lr to `warmup_target`, then a half cosine down to alpha·peak."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        decay_steps: int,
        alpha: float = 0.0,
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        check_args(decay_steps=decay_steps, alpha=alpha, warmup_steps=warmup_steps, warmup_target=warmup_target)
        self.decay_steps, self.alpha, self.warmup_target, self.warmup_steps = (
            decay_steps,
            alpha,
            warmup_target,
            warmup_steps,
        )
        super().__init__(optimizer)

    def _decay(self, step: int, peak: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1.0 - self.alpha) * cosine + self.alpha)

    def lr_at(self, step: int, initial: float) -> float:
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), initial)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            return (self.warmup_target - initial) * step / self.warmup_steps + initial
        return self._decay(step - self.warmup_steps, self.warmup_target)


class ExponentialDecay(KerasSchedule):
    """Keras ExponentialDecay: lr · decay_rate^(step / decay_steps), the exponent floored if `staircase`."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, decay_steps: int, decay_rate: float, staircase: bool = False
    ) -> None:
        check_args(decay_steps=decay_steps, decay_rate=decay_rate)
        self.decay_steps, self.decay_rate, self.staircase = decay_steps, decay_rate, staircase
        super().__init__(optimizer)

    def lr_at(self, step: int, initial: float) -> float:
        p = step / self.decay_steps
        return initial * self.decay_rate ** (math.floor(p) if self.staircase else p)


class PiecewiseConstantDecay(KerasSchedule):
    """Keras PiecewiseConstantDecay: values[0] up to and including step boundaries[0], values[1] up to boundaries[1]…"""

    def __init__(self, optimizer: torch.optim.Optimizer, boundaries: list[int], values: list[float]) -> None:
        check(
            [
                ("boundaries", boundaries, list(boundaries) == sorted(boundaries), "increasing step numbers"),
                ("values", values, len(values) == len(boundaries) + 1 and all(v > 0 for v in values),
                 f"{len(boundaries) + 1} positive learning rates (one more than boundaries)"),
            ]
        )  # fmt: skip
        self.boundaries, self.values = list(boundaries), list(values)
        super().__init__(optimizer)

    def lr_at(self, step: int, initial: float) -> float:
        return next((v for b, v in zip(self.boundaries, self.values, strict=False) if step <= b), self.values[-1])


class ReduceLROnPlateau(_TorchReduceLROnPlateau):
    """Keras' ReduceLROnPlateau callback as a torch scheduler (Lightning steps it with the monitored value).

    Keras reduces after `patience` bad epochs (torch after patience + 1); the last cool-down epoch already counts as
    bad; a rate already at `min_lr` starts no cool-down; `min_delta` is absolute (torch's default is relative).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        check_args(factor=factor, patience=patience, min_lr=min_lr)
        super().__init__(
            optimizer, "min", factor, patience, min_delta, threshold_mode="abs", cooldown=cooldown, min_lr=min_lr
        )

    def step(self, metrics: float | Tensor, epoch: int | None = None) -> None:  # type: ignore[override]
        current = float(metrics)
        self.last_epoch += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if current < self.best - self.threshold:
            self.best, self.num_bad_epochs = current, 0
        elif self.cooldown_counter <= 0:
            self.num_bad_epochs += 1
            reduced = False
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                if self.num_bad_epochs >= self.patience and group["lr"] > min_lr:
                    group["lr"], reduced = max(group["lr"] * self.factor, min_lr), True
            if reduced:  # Keras starts the cool-down only when a rate was reduced
                self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
