"""Keras losses by name, all taking logits (the model never applies softmax itself) and integer labels.

Sparse losses (cross_entropy, nll) use the labels as they are; the others compare softmax probabilities with
one-hot targets built here, which is the step the seed had to do by hand (`to_categorical`) before MSE worked.

>>> import torch
>>> loss = Loss("mse")
>>> round(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item(), 4)  # probs (.5, .5) vs one-hot (0, 1)
0.25
>>> round(Loss("mse", one_hot_targets=False)(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item(), 4)  # vs (1, 1)
0.25
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from fashion_lab.errors import ConfigError, check, choose

LossName = Literal[
    "cross_entropy",
    "categorical_cross_entropy",
    "mse",
    "mae",
    "kl_divergence",
    "categorical_hinge",
    "focal",
    "nll",
]
EPS = 1e-7  # Keras' backend epsilon, used where it clips probabilities before a log


def _focal(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    # Keras CategoricalFocalCrossentropy(alpha=0.25): Σ_c α·(1 - p_c)^γ · (-t_c · log p_c)
    log_p = logits.log_softmax(dim=1)
    return (0.25 * (1 - log_p.exp()).pow(gamma) * -target * log_p).sum(dim=1).mean()


def _kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    # Keras KLDivergence: Σ_c t_c · log(t_c / p_c), with t clipped to [ε, 1], so a one-hot zero adds only ε·log(ε/p_c)
    t = target.clamp(EPS, 1.0)
    return (t * (t.log() - logits.log_softmax(dim=1))).sum(dim=1).mean()


def _categorical_hinge(logits: Tensor, target: Tensor) -> Tensor:
    # Keras CategoricalHinge on probabilities: max(0, 1 + max_{c≠y} p_c - p_y)
    p = logits.softmax(dim=1)
    pos, neg = (target * p).sum(dim=1), ((1 - target) * p).amax(dim=1)
    return (neg - pos + 1).clamp(min=0).mean()


# name -> (loss of (logits, target), whether target is one-hot (True) or the integer labels (False))
LOSSES: dict[str, tuple[Callable[..., Tensor], bool]] = {
    "cross_entropy": (F.cross_entropy, False),  # Keras sparse_categorical_crossentropy, the seed's loss
    "categorical_cross_entropy": (F.cross_entropy, True),  # torch accepts probabilities as the target too
    "mse": (lambda logits, t: F.mse_loss(logits.softmax(dim=1), t), True),
    "mae": (lambda logits, t: F.l1_loss(logits.softmax(dim=1), t), True),
    "kl_divergence": (_kl_divergence, True),
    "categorical_hinge": (_categorical_hinge, True),
    "focal": (_focal, True),
    "nll": (lambda logits, y: F.nll_loss(logits.log_softmax(dim=1), y), False),  # torch's NLLLoss wants log-probs
}


class Loss:
    """A loss chosen by name: `Loss(name)(logits (B, C), labels (B,))` is a scalar mean over the batch.

    Args:
        label_smoothing: Keras' smoothing of the one-hot target, t = (1 - s)·onehot + s / C; sparse cross_entropy
            applies the same through torch; nll cannot.
        gamma: the focal loss' focusing exponent (Keras' default 2; 0 turns focal into α-weighted cross-entropy).
        one_hot_targets: False reproduces the seed's failure on purpose (mse / mae only): the integer label is
            broadcast against all C probabilities, as Keras did for `loss="mse"` with sparse labels. As the
            probabilities sum to 1, Σ_c (p_c - y)² = Σ_c p_c² - 2y + C·y²: the label is a constant, the gradient
            carries no class information and accuracy stays at chance (≈10% on Fashion-MNIST). Never use it
            except to see that lesson.
    """

    def __init__(
        self, name: LossName, label_smoothing: float = 0.0, gamma: float = 2.0, one_hot_targets: bool = True
    ) -> None:
        self.fn, self.one_hot = choose(LOSSES, name, "loss")
        check(
            [
                ("label_smoothing", label_smoothing, 0.0 <= label_smoothing < 1.0, "0 <= value < 1"),
                ("gamma", gamma, gamma >= 0, "gamma >= 0"),
            ]
        )
        if label_smoothing and name == "nll":
            raise ConfigError(f"label_smoothing={label_smoothing!r} needs a loss other than 'nll' (it takes labels).")
        if not one_hot_targets and name not in ("mse", "mae"):
            raise ConfigError(f"one_hot_targets=False is the mse/mae pitfall; it is not allowed with loss={name!r}.")
        self.name, self.label_smoothing, self.gamma, self.one_hot_targets = (
            name,
            label_smoothing,
            gamma,
            one_hot_targets,
        )
        if name == "focal":
            self.fn = partial(_focal, gamma=gamma)

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        if not self.one_hot_targets:  # the pitfall: (B, C) probabilities minus the label broadcast from (B, 1)
            return self.fn(logits, y.unsqueeze(1).to(logits.dtype).expand_as(logits))
        if self.name == "cross_entropy":
            return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if not self.one_hot:
            return self.fn(logits, y)
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[1]
        return self.fn(logits, target)

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"
