"""Keras' Dense stack as a plain `nn.Module`, and its options by name: activations, initializers, regularizers and
constraints, each one small table.

Every table maps the word a user writes in YAML (Keras' own spelling) to its PyTorch equivalent, so the config,
the saved hparams and TensorBoard all show the same word. torch's `nn.Linear` stores the kernel as (out, in),
the transpose of Keras' (in, out): Keras' `axis=0` (over the inputs of one unit) is torch's `dim=-1`.

>>> net = DenseStack(num_classes=10, hidden=(128,))  # the seed's network: 101,770 parameters, forward → logits
>>> net(torch.rand(2, 1, 28, 28)).shape, sum(p.numel() for p in net.parameters())
(torch.Size([2, 10]), 101770)
>>> dense = torch.nn.Linear(4, 3)
>>> _ = INITIALIZERS["ones"](dense.weight)
>>> regularization(dense.weight, "l1", l1=0.5, l2=0.0).item()  # 0.5 · Σ|w| over 12 ones
6.0
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from fashion_lab.errors import ConfigError, check, choose

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


class DenseStack(nn.Sequential):
    """Keras' `Sequential([Flatten, Dense(units, activation), Dropout, ..., Dense(C)])`; `forward` returns logits.

    Works without Lightning: `net(x)` for logits, `net.penalty()` for Keras' `model.losses` (the kernel, bias and
    activity penalties to add to the loss), `net.apply_constraints()` after each optimizer update, as Keras does.
    The Dense options apply to every Dense layer; `activation`, Dropout and the activity regularizer to the hidden
    ones (the output's softmax lives in the loss). Layers carry Keras' names, so a summary reads like Keras'.

    Args:
        num_classes: classes C of the output layer.
        hidden: units of each hidden Dense layer; each is followed by `activation` and Dropout(`dropout`).
        activation: the hidden layers' activation, by Keras name.
        dropout: rate of the Dropout after each hidden layer (the seed: 0.2).
        use_bias: whether the Dense layers have biases (Keras' use_bias).
        kernel_initializer: Keras initializer of every kernel (Keras' default glorot_uniform).
        bias_initializer: Keras initializer of every bias (Keras' default zeros).
        kernel_regularizer: "l1", "l2" or "l1_l2": Keras' penalty λ1·Σ|w| + λ2·Σw² on every kernel, added to the loss.
        bias_regularizer: the same penalty on every bias.
        activity_regularizer: the same penalty on each hidden layer's output, divided by the batch size.
        l1: the regularizers' L1 factor λ1 (Keras' string default 0.01).
        l2: the regularizers' L2 factor λ2 (Keras' string default 0.01; note Keras' L2 has no ½).
        kernel_constraint: Keras constraint applied to every kernel after each update (max_norm, non_neg, ...).
        bias_constraint: the same for every bias.
        in_features: inputs after Flatten (28×28).
    """

    def __init__(
        self,
        num_classes: int = 10,
        hidden: tuple[int, ...] = (128,),
        activation: Activation = "relu",
        dropout: float = 0.2,
        use_bias: bool = True,
        kernel_initializer: Initializer = "glorot_uniform",
        bias_initializer: Initializer = "zeros",
        kernel_regularizer: Regularizer | None = None,
        bias_regularizer: Regularizer | None = None,
        activity_regularizer: Regularizer | None = None,
        l1: float = 0.01,
        l2: float = 0.01,
        kernel_constraint: Constraint | None = None,
        bias_constraint: Constraint | None = None,
        in_features: int = 28 * 28,
    ) -> None:
        _check_dense_options(num_classes, hidden, dropout, l1, l2)
        for argument, value in (
            ("kernel_regularizer", kernel_regularizer),
            ("bias_regularizer", bias_regularizer),
            ("activity_regularizer", activity_regularizer),
        ):
            if value is not None:
                choose(REGULARIZERS, value, argument)
        if activity_regularizer is not None and not hidden:
            raise ConfigError(
                f"activity_regularizer={activity_regularizer!r} needs a hidden layer; hidden=() has none. "
                "Fix: add hidden units, or drop the activity regularizer."
            )
        make_activation = choose(ACTIVATIONS, activation, "activation")
        layers, width = [("flatten", nn.Flatten())], in_features
        for i, units in enumerate(hidden):
            suffix = f"_{i}" if i else ""
            layers += [
                (f"dense{suffix}", nn.Linear(width, units, bias=use_bias)),  # Keras Dense: glorot_uniform, zero bias
                (f"{activation}{suffix}", make_activation()),
                (f"dropout{suffix}", nn.Dropout(dropout)),
            ]
            width = units
        layers.append(("logits", nn.Linear(width, num_classes, bias=use_bias)))  # Keras' softmax is in the loss
        super().__init__(OrderedDict(layers))
        for kind, name, argument in (("weight", kernel_initializer, "kernel_initializer"),
                                     ("bias", bias_initializer, "bias_initializer")):  # fmt: skip
            init = choose(INITIALIZERS, name, argument)
            for p in self.dense_params(kind):
                init(p)
        self.weight_regularizers = [
            (k, r) for k, r in (("weight", kernel_regularizer), ("bias", bias_regularizer)) if r
        ]
        self.activity_regularizer, self.l1, self.l2 = activity_regularizer, l1, l2
        pairs = (("weight", kernel_constraint, "kernel_constraint"), ("bias", bias_constraint, "bias_constraint"))
        self.constraints = [(kind, choose(CONSTRAINTS, c, arg)) for kind, c, arg in pairs if c is not None]
        self.activity_penalty: Tensor | None = None  # of the last forward, as Keras' `layer.losses`

    def dense_params(self, kind: str) -> list[nn.Parameter]:
        """Every Dense layer's kernel ("weight") or bias, in layer order."""
        return [getattr(m, kind) for m in self if isinstance(m, nn.Linear) and getattr(m, kind) is not None]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) or (B, 28, 28) images → (B, C) logits."""
        if self.activity_regularizer is None:
            return super().forward(x)
        penalty = 0.0
        for layer in self:
            x = layer(x)
            if not isinstance(layer, (nn.Flatten, nn.Linear, nn.Dropout)):  # an activation's output
                # Keras divides the activity penalty by the batch size, so λ does not depend on it
                penalty = penalty + regularization(x, self.activity_regularizer, self.l1, self.l2) / len(x)
        self.activity_penalty = penalty
        return x

    def penalty(self) -> Tensor | None:
        """Keras' `sum(model.losses)`: λ1·Σ|w| + λ2·Σw² over the regularized kernels/biases, plus the last forward's
        activity penalty; None when nothing is regularized (so the loss needs no extra add)."""
        terms = [regularization(p, name, self.l1, self.l2) for kind, name in self.weight_regularizers
                 for p in self.dense_params(kind)]  # fmt: skip
        if self.activity_penalty is not None:
            terms.append(self.activity_penalty)
        return torch.stack(terms).sum() if terms else None

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Keras applies kernel/bias constraints to the variables right after each optimizer update."""
        for kind, constrain in self.constraints:
            for p in self.dense_params(kind):
                constrain(p)


def _check_dense_options(num_classes: int, hidden: tuple[int, ...], dropout: float, l1: float, l2: float) -> None:
    check(
        [
            ("num_classes", num_classes, isinstance(num_classes, int) and num_classes >= 2, "an integer >= 2"),
            ("hidden", hidden, all(isinstance(h, int) and h > 0 for h in hidden), "positive integers"),
            ("dropout", dropout, 0.0 <= dropout < 1.0, "0 <= dropout < 1"),
            ("l1", l1, l1 >= 0, "l1 >= 0"),
            ("l2", l2, l2 >= 0, "l2 >= 0"),
        ]
    )
