"""An optimizer and a learning-rate schedule from their Keras names and options, with Keras' cross-checks.

Plain functions, usable without Lightning: `MLPClassifier.configure_optimizers` calls them with its hparams.

>>> w = torch.nn.Parameter(torch.zeros(3))
>>> opt = make_optimizer([w], "sgd", lr=0.1, momentum=0.9)
>>> schedule = make_schedule(opt, total_steps=100, lr_schedule="cosine_decay", alpha=0.1)
>>> type(opt).__name__, type(schedule).__name__, schedule.decay_steps
('SGD', 'CosineDecay', 100)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Literal, get_args

import torch
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from fashion_lab.errors import ConfigError, check, choose
from fashion_lab.keras.optimizers import OPTIMIZERS, KerasOptimizer
from fashion_lab.keras.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay, ReduceLROnPlateau

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
ScheduleName = Literal[
    "constant", "cosine_decay", "exponential_decay", "piecewise_constant_decay", "one_cycle", "reduce_on_plateau"
]


def make_optimizer(
    params: Iterable,
    optimizer: OptimizerName = "adam",
    lr: float | None = None,
    weight_decay: float | None = None,
    momentum: float = 0.0,
    nesterov: bool = False,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    gradient_accumulation_steps: int | None = None,
) -> KerasOptimizer:
    """Keras' optimizer called `optimizer` over `params`; None keeps Keras' default (lr, weight_decay)."""
    cls = choose(OPTIMIZERS, optimizer, "optimizer")
    check(
        [
            # here, as adam/adamw take neither momentum nor nesterov, so their classes cannot check them
            ("momentum", momentum, 0.0 <= momentum < 1.0, "0 <= momentum < 1"),
            ("nesterov", nesterov, not nesterov or momentum > 0, "nesterov=True only with momentum > 0"),
        ]
    )
    if momentum and optimizer in ("adam", "adamw"):  # Adam's momentum is its betas: never ignore an option
        raise ConfigError(
            f"momentum={momentum!r} has no effect with optimizer={optimizer!r}; allowed with: 'sgd', 'rmsprop'."
        )
    kwargs = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm,
              "gradient_accumulation_steps": gradient_accumulation_steps}  # fmt: skip
    kwargs |= {k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None}
    if optimizer == "sgd":
        kwargs |= {"momentum": momentum, "nesterov": nesterov}
    elif optimizer == "rmsprop":
        kwargs["momentum"] = momentum
    return cls(params, **kwargs)  # the class checks lr, weight_decay and the clipping options


def check_schedule(
    lr_schedule: ScheduleName = "constant",
    decay_steps: int | None = None,
    decay_rate: float = 0.1,
    staircase: bool = False,
    alpha: float = 0.0,
    warmup_steps: int = 0,
    warmup_target: float | None = None,
    boundaries: list[int] | None = None,
    values: list[float] | None = None,
    plateau_factor: float = 0.1,
    plateau_patience: int = 10,
    min_lr: float = 0.0,
) -> None:
    """Check a schedule's options before the run's length is known; these are `make_schedule`'s options."""
    choose(dict.fromkeys(get_args(ScheduleName)), lr_schedule, "lr_schedule")
    check(
        [
            ("warmup_steps", warmup_steps, warmup_steps >= 0, "an integer >= 0"),
            ("decay_steps", decay_steps, decay_steps is None or decay_steps > 0,
             "a positive integer, or None for the whole run"),
            ("decay_rate", decay_rate, decay_rate > 0, "a positive number"),
            ("alpha", alpha, 0 <= alpha <= 1, "0 <= alpha <= 1"),
            ("warmup_target", warmup_target, warmup_target is None or warmup_target > 0,
             "a positive number, or None (no warm-up)"),
            ("plateau_factor", plateau_factor, 0 < plateau_factor < 1, "0 < plateau_factor < 1"),
            ("plateau_patience", plateau_patience, plateau_patience >= 0, "an integer >= 0"),
            ("min_lr", min_lr, min_lr >= 0, "min_lr >= 0"),
        ]
    )  # fmt: skip
    if lr_schedule == "piecewise_constant_decay" and (boundaries is None or values is None):
        raise ConfigError(
            "lr_schedule='piecewise_constant_decay' needs boundaries and values, e.g. boundaries=[1500, 3000], "
            "values=[1e-3, 5e-4, 1e-4]."
        )


# check_schedule's signature is the one list of the schedule options and their defaults
SCHEDULE_DEFAULTS = {name: p.default for name, p in inspect.signature(check_schedule).parameters.items()}


def make_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int | Callable[[], int], **options: object
) -> LRScheduler | None:
    """The torch scheduler for `check_schedule`'s options (checked first), or None for a constant rate.

    `total_steps` is the run's optimizer steps (or a function giving them, asked only when a schedule needs them:
    one_cycle, or decay_steps=None). A Keras schedule is stepped once per optimizer step; reduce_on_plateau once per
    epoch, with the monitored value.
    """
    check_schedule(**options)
    o = SimpleNamespace(**(SCHEDULE_DEFAULTS | options))
    steps = total_steps if callable(total_steps) else lambda: total_steps
    if o.lr_schedule == "constant":
        return None
    if o.lr_schedule == "reduce_on_plateau":
        return ReduceLROnPlateau(optimizer, o.plateau_factor, o.plateau_patience, min_lr=o.min_lr)
    if o.lr_schedule == "piecewise_constant_decay":  # values[0] replaces the optimizer's lr from the first step
        return PiecewiseConstantDecay(optimizer, o.boundaries, o.values)
    if o.lr_schedule == "one_cycle":  # torch's; momentum left alone (Keras' optimizers have no momentum schedule)
        total = steps()
        pct = o.warmup_steps / total if o.warmup_steps else 0.3
        return OneCycleLR(optimizer, optimizer.defaults["lr"], total_steps=total, pct_start=pct, cycle_momentum=False)
    decay_steps = o.decay_steps or max(1, steps() - o.warmup_steps)
    if o.lr_schedule == "cosine_decay":
        return CosineDecay(optimizer, decay_steps, o.alpha, o.warmup_target, o.warmup_steps)
    return ExponentialDecay(optimizer, decay_steps, o.decay_rate, o.staircase)
