"""Keras Dense options by name: activations, initializers, regularizers and constraints, each one small table.

Every table maps the word a user writes in YAML (Keras' own spelling) to its PyTorch equivalent, so the config,
the saved hparams and TensorBoard all show the same word. torch's `nn.Linear` stores the kernel as (out, in),
the transpose of Keras' (in, out): Keras' `axis=0` (over the inputs of one unit) is torch's `dim=-1`.

>>> dense = torch.nn.Linear(4, 3)
>>> _ = INITIALIZERS["ones"](dense.weight)
>>> regularization(dense.weight, "l1", l1=0.5, l2=0.0).item()  # 0.5 · Σ|w| over 12 ones
6.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

Activation = Literal[
    "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus", "softsign", "swish", "linear"
]
Initializer = Literal[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "orthogonal",
    "zeros",
    "ones",
]
Regularizer = Literal["l1", "l2", "l1_l2"]
Constraint = Literal["max_norm", "non_neg", "unit_norm", "min_max_norm"]

T = TypeVar("T")


def choose(table: Mapping[str, T], value: str, argument: str) -> T:
    """`table[value]`, or a ValueError naming the argument, the bad value and the allowed words."""
    if value not in table:
        raise ValueError(f"{argument}={value!r} is not supported; choose one of {', '.join(table)}.")
    return table[value]


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, 0.2),  # Keras' activation="leaky_relu" uses negative_slope 0.2 (torch: 0.01)
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,  # exact erf form, Keras' default approximate=False
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "swish": nn.SiLU,
    "linear": nn.Identity,  # Keras' activation=None: a(x) = x
}


def _fans(t: Tensor) -> tuple[int, int]:
    # Keras compute_fans: a 1-D tensor (a bias) has fan_in = fan_out = its length; torch's helper rejects 1-D.
    return (t.shape[-1], t.shape[0]) if t.dim() >= 2 else (t.shape[0], t.shape[0])


@torch.no_grad()
def variance_scaling(t: Tensor, scale: float, mode: str, distribution: str) -> Tensor:
    """Keras VarianceScaling: std² = scale / n, n = fan_in, fan_out or their mean; normals truncated at 2σ."""
    fan_in, fan_out = _fans(t)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        return t.uniform_(-limit, limit)
    std = math.sqrt(scale / n) / 0.87962566103423978  # std of a unit normal truncated at ±2, as Keras corrects
    return nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


INITIALIZERS: dict[str, Callable[[Tensor], object]] = {
    "glorot_uniform": partial(variance_scaling, scale=1.0, mode="fan_avg", distribution="uniform"),
    "glorot_normal": partial(variance_scaling, scale=1.0, mode="fan_avg", distribution="normal"),
    "he_uniform": partial(variance_scaling, scale=2.0, mode="fan_in", distribution="uniform"),
    "he_normal": partial(variance_scaling, scale=2.0, mode="fan_in", distribution="normal"),
    "lecun_uniform": partial(variance_scaling, scale=1.0, mode="fan_in", distribution="uniform"),
    "lecun_normal": partial(variance_scaling, scale=1.0, mode="fan_in", distribution="normal"),
    "random_normal": partial(nn.init.normal_, std=0.05),  # Keras RandomNormal(mean=0, stddev=0.05)
    "random_uniform": partial(nn.init.uniform_, a=-0.05, b=0.05),
    "truncated_normal": partial(nn.init.trunc_normal_, std=0.05, a=-0.1, b=0.1),
    "orthogonal": nn.init.orthogonal_,
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
}


# name -> which of Keras' L1L2 terms it uses: (λ1·Σ|t|, λ2·Σt²)
REGULARIZERS: dict[str, tuple[bool, bool]] = {"l1": (True, False), "l2": (False, True), "l1_l2": (True, True)}


def regularization(t: Tensor, name: str, l1: float, l2: float) -> Tensor:
    """Keras L1L2 penalty of `t` for the regularizer called `name`."""
    use_l1, use_l2 = REGULARIZERS[name]
    if use_l1 and use_l2:
        return l1 * t.abs().sum() + l2 * t.square().sum()
    return l1 * t.abs().sum() if use_l1 else l2 * t.square().sum()


def _rescale_norm(w: Tensor, low: float, high: float, rate: float) -> Tensor:
    # Keras: w · (rate·clip(‖w‖, low, high) + (1 - rate)·‖w‖) / (ε + ‖w‖), the norm taken over each unit's inputs
    norms = w.norm(dim=-1, keepdim=True)
    desired = rate * norms.clamp(low, high) + (1.0 - rate) * norms
    return w.mul_(desired / (1e-7 + norms))


CONSTRAINTS: dict[str, Callable[[Tensor], object]] = {
    "max_norm": partial(_rescale_norm, low=0.0, high=2.0, rate=1.0),  # Keras MaxNorm(max_value=2)
    "non_neg": partial(Tensor.clamp_, min=0.0),
    "unit_norm": partial(_rescale_norm, low=1.0, high=1.0, rate=1.0),
    "min_max_norm": partial(_rescale_norm, low=0.0, high=1.0, rate=1.0),  # Keras MinMaxNorm defaults
}
