"""Keras Dense options by name: every activation, initializer, regularizer and constraint, checked by its numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashion_lab import MLPClassifier
from fashion_lab.keras.layers import ACTIVATIONS, CONSTRAINTS, INITIALIZERS, REGULARIZERS, DenseStack, regularization

X = torch.linspace(-3, 3, 13)
EXPECTED_ACTIVATIONS = {
    "relu": X.clamp(min=0),
    "leaky_relu": torch.where(X > 0, X, 0.2 * X),  # Keras' negative slope
    "elu": torch.where(X > 0, X, X.exp() - 1),
    "selu": 1.0507009873554805 * torch.where(X > 0, X, 1.6732632423543772 * (X.exp() - 1)),
    "gelu": 0.5 * X * (1 + torch.erf(X / math.sqrt(2))),
    "sigmoid": 1 / (1 + (-X).exp()),
    "tanh": X.tanh(),
    "softplus": (1 + X.exp()).log(),
    "softsign": X / (1 + X.abs()),
    "swish": X / (1 + (-X).exp()),
    "linear": X,
}


def test_every_activation_is_tested() -> None:
    assert set(EXPECTED_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_values(name: str) -> None:
    torch.testing.assert_close(ACTIVATIONS[name]()(X), EXPECTED_ACTIVATIONS[name])
    model = MLPClassifier(activation=name, hidden=(16, 8))
    assert len([m for m in model.net if isinstance(m, type(ACTIVATIONS[name]()))]) == 2


# name -> (expected mean, expected std, largest |value| allowed) for a (out=300, in=200) kernel
FAN_IN, FAN_OUT = 200, 300
EXPECTED_INIT = {
    "glorot_uniform": (0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (0.0, math.sqrt(2 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(2 / (FAN_IN + FAN_OUT)) / 0.8796),
    "he_uniform": (0.0, math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "he_normal": (0.0, math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / 0.8796),
    "lecun_uniform": (0.0, math.sqrt(1 / FAN_IN), math.sqrt(3 / FAN_IN)),
    "lecun_normal": (0.0, math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / 0.8796),
    "random_normal": (0.0, 0.05, 1.0),
    "random_uniform": (0.0, 0.05 / math.sqrt(3), 0.05),
    "truncated_normal": (0.0, 0.05 * 0.8796, 0.1),
    "orthogonal": (0.0, 1 / math.sqrt(FAN_OUT), 1.0),
    "zeros": (0.0, 0.0, 0.0),
    "ones": (1.0, 0.0, 1.0),
}


def test_every_initializer_is_tested() -> None:
    assert set(EXPECTED_INIT) == set(INITIALIZERS)


@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_initializer_statistics(name: str) -> None:
    torch.manual_seed(0)
    w = torch.empty(FAN_OUT, FAN_IN)  # torch's (out, in) kernel
    INITIALIZERS[name](w)
    mean, std, bound = EXPECTED_INIT[name]
    assert w.mean().item() == pytest.approx(mean, abs=0.01)
    assert w.std().item() == pytest.approx(std, rel=0.03, abs=1e-6)
    assert w.abs().max().item() <= bound + 1e-6


def test_orthogonal_rows() -> None:
    w = INITIALIZERS["orthogonal"](torch.empty(64, 128))
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)


def test_model_uses_keras_default_initializers() -> None:
    torch.manual_seed(0)
    model = MLPClassifier()
    kernel, bias = model.net.dense.weight, model.net.dense.bias
    assert kernel.abs().max() <= math.sqrt(6 / (784 + 128))  # glorot_uniform
    assert not bias.any()  # zeros
    model = MLPClassifier(kernel_initializer="ones", bias_initializer="ones", use_bias=True)
    assert model.net.logits.weight.eq(1).all() and model.net.logits.bias.eq(1).all()


@pytest.mark.parametrize(
    ("name", "expected"), [("l1", 0.3 * 6.0), ("l2", 0.5 * 14.0), ("l1_l2", 0.3 * 6.0 + 0.5 * 14.0)]
)
def test_regularization_formula(name: str, expected: float) -> None:
    t = torch.tensor([1.0, -2.0, 3.0])  # Σ|t| = 6, Σt² = 14
    assert regularization(t, name, l1=0.3, l2=0.5).item() == pytest.approx(expected)
    assert set(REGULARIZERS) == {"l1", "l2", "l1_l2"}


def test_kernel_l1_penalty_equals_lambda_times_sum_abs() -> None:
    net = DenseStack(kernel_regularizer="l1", l1=0.01)
    kernels = [net.dense.weight, net.logits.weight]
    expected = 0.01 * sum(k.abs().sum() for k in kernels)
    torch.testing.assert_close(net.penalty(), expected)
    both = DenseStack(kernel_regularizer="l2", bias_regularizer="l1", bias_initializer="ones", l1=0.1, l2=0.2)
    expected = 0.2 * (both.dense.weight.square().sum() + both.logits.weight.square().sum()) + 0.1 * (128 + 10)
    torch.testing.assert_close(both.penalty(), expected)
    assert DenseStack().penalty() is None  # nothing regularized: nothing to add to the loss


def test_activity_penalty_is_per_sample_mean() -> None:
    net = DenseStack(activity_regularizer="l2", l2=0.5, dropout=0.0).eval()
    x = torch.rand(4, 1, 28, 28)
    logits = net(x)
    hidden = F.relu(net.dense(x.flatten(1)))
    torch.testing.assert_close(logits, net.logits(hidden))
    torch.testing.assert_close(net.penalty(), 0.5 * hidden.square().sum() / 4)


def test_dense_stack_is_a_plain_module_with_any_input_width() -> None:
    net = DenseStack(num_classes=5, hidden=(16, 8), activation="tanh", in_features=12, kernel_constraint="unit_norm")
    assert [name for name, _ in net.named_children()] == [
        "flatten", "dense", "tanh", "dropout", "dense_1", "tanh_1", "dropout_1", "logits"
    ]  # fmt: skip
    assert net(torch.rand(3, 12)).shape == (3, 5)
    with torch.no_grad():
        net.dense.weight.mul_(3.0)
    net.apply_constraints()  # as Keras after each update
    torch.testing.assert_close(net.dense.weight.norm(dim=1), torch.ones(16))


@pytest.mark.parametrize("name", list(CONSTRAINTS))
def test_constraint_function(name: str) -> None:
    w = torch.randn(5, 7) * 3
    CONSTRAINTS[name](w)
    norms = w.norm(dim=1)  # per unit, over its inputs (Keras axis=0 of an (in, out) kernel)
    checks = {
        "max_norm": (norms <= 2 + 1e-5).all(),
        "non_neg": (w >= 0).all(),
        "unit_norm": torch.allclose(norms, torch.ones(5), atol=1e-5),
        "min_max_norm": (norms <= 1 + 1e-5).all(),
    }
    assert checks[name]


def test_max_norm_leaves_small_weights_alone() -> None:
    w = torch.full((2, 4), 0.1)
    CONSTRAINTS["max_norm"](w)
    torch.testing.assert_close(w, torch.full((2, 4), 0.1))


@pytest.mark.parametrize(
    ("argument", "value", "allowed"),
    [
        ("activation", "relu6", "leaky_relu"),
        ("kernel_initializer", "glorot", "glorot_uniform"),
        ("bias_initializer", "one", "zeros"),
        ("kernel_regularizer", "l3", "l1_l2"),
        ("bias_regularizer", "L2", "l1_l2"),
        ("activity_regularizer", "dropout", "l1_l2"),
        ("kernel_constraint", "maxnorm", "max_norm"),
        ("bias_constraint", "positive", "non_neg"),
    ],
)
def test_unknown_option_names_fail_at_construction(argument: str, value: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=rf"{argument}='{value}' is not supported; choose one of .*{allowed}"):
        MLPClassifier(**{argument: value})


def test_no_bias() -> None:
    model = MLPClassifier(use_bias=False)
    assert model.net.dense.bias is None and isinstance(model.net.logits, nn.Linear)
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 128 * 10
