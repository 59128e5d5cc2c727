"""An optimizer and a learning-rate schedule from their Keras names and options, with Keras' cross-checks.

Plain functions, usable without Lightning: `MLPClassifier.configure_optimizers` calls them with its hparams.
The signatures of `check_optimizer` and `check_schedule` are the one list of the options, with their defaults
and help (`fashion_lab.options` gives them to the model and the CLI).

>>> w = torch.nn.Parameter(torch.zeros(3))
>>> opt = make_optimizer([w], optimizer="sgd", lr=0.1, momentum=0.9)
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

from fashion_lab.errors import ConfigError, check_rules, choose
from fashion_lab.keras.optimizers import OPTIMIZERS, RANGES, KerasOptimizer, check_clipping, check_nesterov
from fashion_lab.keras.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay, ReduceLROnPlateau
from fashion_lab.keras.schedules import check_args as check_schedule_args

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
ScheduleName = Literal[
    "constant", "cosine_decay", "exponential_decay", "piecewise_constant_decay", "one_cycle", "reduce_on_plateau"
]


def check_optimizer(
    optimizer: OptimizerName = "adam",
    lr: float | None = None,
    weight_decay: float | None = None,
    momentum: float = 0.0,
    nesterov: bool = False,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    gradient_accumulation_steps: int | None = None,
) -> None:
    """Check the optimizer's options without building one. This signature is the one list of them: `make_optimizer`,
    the model and the CLI take their names, types, defaults and help from it.

    Args:
        optimizer: adam, adamw, sgd or rmsprop, with Keras' update rules and defaults (`fashion_lab.keras.optim`).
        lr: learning rate (the schedules' starting value); None = Keras' default (1e-3, sgd 1e-2).
        weight_decay: Keras' decoupled weight decay, w -= w·wd·lr each update, in any optimizer; None = Keras'
            default (adamw 0.004, others none). Unlike `kernel_regularizer="l2"` it is not part of the loss.
        momentum: sgd's and rmsprop's momentum (Keras' default 0).
        nesterov: sgd with Nesterov momentum.
        clipnorm: Keras' clipnorm: clip each weight's gradient to this L2 norm.
        clipvalue: Keras' clipvalue: clip every gradient value to [-clipvalue, clipvalue].
        global_clipnorm: Keras' global_clipnorm: clip all gradients together to this L2 norm.
        gradient_accumulation_steps: Keras' option: update every N steps with the mean of N steps' gradients.
    """
    choose(OPTIMIZERS, optimizer, "optimizer")
    # the ranges of `fashion_lab.keras.optimizers`, which its classes check again when they are built
    check_rules(RANGES, momentum=momentum, weight_decay=weight_decay, **({} if lr is None else {"lr": lr}))
    check_nesterov(nesterov, momentum)  # for every optimizer: adam/adamw take no nesterov to check it themselves
    check_clipping(clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps)
    if momentum and optimizer in ("adam", "adamw"):  # Adam's momentum is its betas: never ignore an option
        raise ConfigError(
            f"momentum={momentum!r} has no effect with optimizer={optimizer!r}; allowed with: 'sgd', 'rmsprop'."
        )


OPTIMIZER_DEFAULTS = {name: p.default for name, p in inspect.signature(check_optimizer).parameters.items()}


def make_optimizer(params: Iterable, **options: object) -> KerasOptimizer:
    """Keras' optimizer for `check_optimizer`'s options (checked first) over `params`; None keeps Keras' default."""
    check_optimizer(**options)
    options = OPTIMIZER_DEFAULTS | options
    clipping = ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps")
    kwargs = {k: options[k] for k in clipping}
    kwargs |= {k: options[k] for k in ("lr", "weight_decay") if options[k] is not None}
    if options["optimizer"] == "sgd":
        kwargs |= {"momentum": options["momentum"], "nesterov": options["nesterov"]}
    elif options["optimizer"] == "rmsprop":
        kwargs["momentum"] = options["momentum"]
    return OPTIMIZERS[options["optimizer"]](params, **kwargs)


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
    """Check the schedule's options before the run's length is known. This signature is the one list of them:
    `make_schedule`, the model and the CLI take their names, types, defaults and help from it.

    Args:
        lr_schedule: the learning rate over the run, by Keras name: constant, cosine_decay (with optional warm-up),
            exponential_decay, piecewise_constant_decay, one_cycle (torch's OneCycleLR, peak = lr) or
            reduce_on_plateau (Keras' callback, monitoring val/loss each epoch).
        decay_steps: optimizer steps of cosine/exponential decay; None = all steps of the run (after the warm-up).
        decay_rate: exponential_decay's factor per `decay_steps`.
        staircase: exponential_decay in whole steps of `decay_steps`.
        alpha: cosine_decay's final learning rate as a fraction of the peak.
        warmup_steps: cosine_decay: steps of linear warm-up from lr to `warmup_target`; one_cycle: steps of its rise.
        warmup_target: cosine_decay's peak after warm-up; None = no warm-up.
        boundaries: piecewise_constant_decay's step boundaries.
        values: piecewise_constant_decay's learning rates, one more than `boundaries` (values[0] replaces lr).
        plateau_factor: reduce_on_plateau: multiply lr by this when val/loss stops improving.
        plateau_patience: reduce_on_plateau: epochs without improvement before a reduction.
        min_lr: reduce_on_plateau: the learning rate's lower bound.
    """
    choose(dict.fromkeys(get_args(ScheduleName)), lr_schedule, "lr_schedule")
    # the ranges of `fashion_lab.keras.schedules`, which its classes check again when they are built
    check_schedule_args(
        warmup_steps=warmup_steps,
        **({} if decay_steps is None else {"decay_steps": decay_steps}),  # None: the whole run, known at fit
        decay_rate=decay_rate,
        alpha=alpha,
        warmup_target=warmup_target,
        plateau_factor=plateau_factor,
        plateau_patience=plateau_patience,
        min_lr=min_lr,
    )
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
