"""Every loss by name against its Keras formula, written out by hand on a tiny batch; bad options fail early."""

from __future__ import annotations

import pytest
import torch

from fashion_lab.keras.losses import LOSSES, Loss

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
Y = torch.tensor([0, 2, 1, 1])
P = LOGITS.softmax(dim=1)
ONE_HOT = torch.eye(3)[Y]
P_TRUE = P[torch.arange(4), Y]


def smooth(s: float) -> torch.Tensor:
    return ONE_HOT * (1 - s) + s / 3


def keras_focal(t: torch.Tensor, gamma: float) -> torch.Tensor:
    return (0.25 * (1 - P) ** gamma * -t * P.log()).sum(dim=1).mean()


EXPECTED = {
    "cross_entropy": -P_TRUE.log().mean(),
    "categorical_cross_entropy": -(ONE_HOT * P.log()).sum(dim=1).mean(),
    "mse": ((P - ONE_HOT) ** 2).mean(),  # mean over classes, then over the batch
    "mae": (P - ONE_HOT).abs().mean(),
    "kl_divergence": -P_TRUE.log().mean(),  # one-hot: KL(t || p) is the cross-entropy
    "categorical_hinge": (1 + (P * (1 - ONE_HOT)).amax(dim=1) - P_TRUE).clamp(min=0).mean(),
    "focal": keras_focal(ONE_HOT, gamma=2.0),
    "nll": -P_TRUE.log().mean(),
}


def test_every_loss_is_tested() -> None:
    assert set(EXPECTED) == set(LOSSES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_keras_formula(name: str) -> None:
    torch.testing.assert_close(Loss(name)(LOGITS, Y), EXPECTED[name])


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_has_gradient(name: str) -> None:
    logits = LOGITS.clone().requires_grad_()
    Loss(name)(logits, Y).backward()
    assert logits.grad.abs().sum() > 0


def test_label_smoothing_matches_keras() -> None:
    t = smooth(0.1)
    expected = -(t * P.log()).sum(dim=1).mean()
    torch.testing.assert_close(Loss("categorical_cross_entropy", label_smoothing=0.1)(LOGITS, Y), expected)
    torch.testing.assert_close(Loss("cross_entropy", label_smoothing=0.1)(LOGITS, Y), expected)
    torch.testing.assert_close(Loss("mse", label_smoothing=0.1)(LOGITS, Y), ((P - t) ** 2).mean())


def test_kl_divergence_with_soft_targets() -> None:
    t = smooth(0.3)
    torch.testing.assert_close(Loss("kl_divergence", label_smoothing=0.3)(LOGITS, Y), (t * (t / P).log()).sum(1).mean())


@pytest.mark.parametrize("gamma", [0.0, 0.5, 3.0])
def test_focal_gamma(gamma: float) -> None:
    torch.testing.assert_close(Loss("focal", gamma=gamma)(LOGITS, Y), keras_focal(ONE_HOT, gamma))


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_pitfall_broadcasts_the_integer_label(name: str) -> None:
    label = Y.float().unsqueeze(1)  # (B, 1) against (B, C): each probability compared with the label itself
    expected = ((P - label) ** 2).mean() if name == "mse" else (P - label).abs().mean()
    torch.testing.assert_close(Loss(name, one_hot_targets=False)(LOGITS, Y), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "hinge"}, r"loss='hinge' is not supported; choose one of cross_entropy, .*focal, nll"),
        ({"name": "mse", "label_smoothing": 1.0}, r"label_smoothing=1.0 is out of range; allowed: 0 <= value < 1"),
        ({"name": "mse", "label_smoothing": -0.1}, r"label_smoothing=-0.1 is out of range"),
        ({"name": "nll", "label_smoothing": 0.1}, r"label_smoothing=0.1 needs a loss other than 'nll'"),
        ({"name": "focal", "gamma": -1.0}, r"gamma=-1.0 is out of range; allowed: gamma >= 0"),
        ({"name": "cross_entropy", "one_hot_targets": False}, r"one_hot_targets=False is the mse/mae pitfall"),
    ],
)
def test_bad_loss_options_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Loss(**kwargs)
