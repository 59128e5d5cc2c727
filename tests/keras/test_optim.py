"""fashion_lab.keras' optimizers and schedules against real Keras (the fixture's 15 optimizer cases), and the
schedules' own rules.

Each case trains the same small Dense stack (12 → 16 relu → 5) from the same weights on the same 50 batches as
Keras did (scripts/make_keras_fixture.py), then compares every step's loss and learning rate and the final weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashion_lab.errors import ConfigError
from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.optimizers import OPTIMIZERS, SGD, Adam
from fashion_lab.keras.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay, ReduceLROnPlateau
from tests.helpers.keras_fixture import KERAS, keras

CASES = sorted({key.split("/")[1] for key in keras if key.startswith("opt/") and key.endswith("/config")})
SCHEDULES = {
    "cosine_decay": CosineDecay,
    "exponential_decay": ExponentialDecay,
    "piecewise_constant_decay": PiecewiseConstantDecay,
}
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _keras_net() -> DenseStack:
    net = DenseStack(num_classes=5, hidden=(16,), dropout=0.0, in_features=12)
    with torch.no_grad():  # Keras kernels are (in, out); torch's are (out, in)
        for layer, i in ((net.dense, 0), (net.logits, 1)):
            layer.weight.copy_(torch.from_numpy(keras[f"opt/init/kernel_{i}"]).T)
            layer.bias.copy_(torch.from_numpy(keras[f"opt/init/bias_{i}"]))
    return net


def _train(case: str) -> tuple[DenseStack, list[float], list[float]]:
    config = json.loads(str(keras[f"opt/{case}/config"]))
    schedule = config["schedule"]
    kwargs = dict(config["kwargs"])
    if schedule is None:
        kwargs["lr"] = config["learning_rate"]
    else:
        schedule_kwargs = dict(schedule["kwargs"])
        kwargs["lr"] = schedule_kwargs.pop("initial_learning_rate", None) or schedule_kwargs["values"][0]
    net = _keras_net()
    opt = OPTIMIZERS[config["optimizer"]](net.parameters(), **kwargs)
    scheduler = None if schedule is None else SCHEDULES[schedule["name"]](opt, **schedule_kwargs)
    losses, lrs = [], []
    for x, y in zip(torch.from_numpy(keras["opt/x"]), torch.from_numpy(keras["opt/y"]), strict=True):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return net, losses, lrs


def test_fixture_has_every_optimizer_and_schedule() -> None:
    assert len(CASES) == 15
    names = {json.loads(str(keras[f"opt/{c}/config"]))["optimizer"] for c in CASES}
    assert names == set(OPTIMIZERS)


@pytest.mark.parametrize("case", CASES)
def test_fifty_steps_match_keras(case: str) -> None:
    net, losses, lrs = _train(case)
    np.testing.assert_allclose(lrs, keras[f"opt/{case}/lrs"], **TOL, err_msg=f"{case} learning rates vs {KERAS}")
    np.testing.assert_allclose(losses, keras[f"opt/{case}/losses"], **TOL, err_msg=f"{case} losses vs {KERAS}")
    for layer, i in ((net.dense, 0), (net.logits, 1)):
        for name, ours in ((f"kernel_{i}", layer.weight.T), (f"bias_{i}", layer.bias)):
            key = f"opt/{case}/final/{name}"
            np.testing.assert_allclose(ours.detach().numpy(), keras[key], **TOL, err_msg=f"{key} vs {KERAS}")


def test_torch_adam_would_not_match_keras() -> None:
    """The fixture can tell the ε placement apart: torch's own Adam drifts from Keras on the large-ε case."""
    config = json.loads(str(keras["opt/adam_eps/config"]))
    net = _keras_net()
    opt = torch.optim.Adam(net.parameters(), lr=config["learning_rate"], eps=config["kwargs"]["epsilon"])
    for x, y in zip(torch.from_numpy(keras["opt/x"]), torch.from_numpy(keras["opt/y"]), strict=True):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    drift = (net.logits.weight.T.detach().numpy() - keras["opt/adam_eps/final/kernel_1"]).__abs__().max()
    assert drift > 1e-3


def test_state_dict_resumes_exactly() -> None:
    """The step counts (Adam's t, the accumulation phase) travel in the optimizer's state_dict."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    grads = torch.randn(6, 4)

    def run(steps: range, opt: Adam) -> None:
        for g in grads[steps.start : steps.stop]:
            w.grad = g.clone()
            opt.step()

    start = w.detach().clone()
    opt = Adam([w], lr=0.1, gradient_accumulation_steps=2)
    run(range(0, 6), opt)
    straight = w.detach().clone()
    with torch.no_grad():
        w.copy_(start)
    first = Adam([w], lr=0.1, gradient_accumulation_steps=2)
    run(range(0, 3), first)  # stops mid-accumulation
    second = Adam([w], lr=0.1, gradient_accumulation_steps=2)
    second.load_state_dict(first.state_dict())
    run(range(3, 6), second)
    torch.testing.assert_close(w.detach(), straight, rtol=0, atol=0)


def test_reduce_on_plateau_follows_keras_patience_and_cooldown() -> None:
    """Keras reduces after `patience` bad epochs (torch after patience + 1) and waits `cooldown` epochs."""
    opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    lrs = []
    for val_loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]:
        plateau.step(val_loss)
        lrs.append(opt.param_groups[0]["lr"])
    # 2 bad epochs → halve at epoch 2; the cool-down epoch 3 resets the count, then counts as bad (Keras' order);
    # epoch 4 halves again; 0.5 improves at epoch 6; epochs 7, 8 bad → 0.125 floored at min_lr 0.2; then no change
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2]


def test_piecewise_boundaries_are_inclusive_and_cosine_holds_its_floor() -> None:
    opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    piecewise = PiecewiseConstantDecay(opt, boundaries=[2, 4], values=[0.3, 0.2, 0.1])
    assert [piecewise.lr_at(s, 0.1) for s in range(7)] == [0.3, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1]
    cosine = CosineDecay(opt, decay_steps=10, alpha=0.1)
    assert cosine.lr_at(0, 1.0) == 1.0 and cosine.lr_at(5, 1.0) == pytest.approx(0.55)
    assert cosine.lr_at(10, 1.0) == cosine.lr_at(1000, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Adam(p, clipnorm=1.0, global_clipnorm=1.0), "clipnorm and global_clipnorm are both set"),
        (lambda p: Adam(p, epsilon=0.0), "epsilon=0.0 is out of range; allowed: a positive number"),
        (lambda p: SGD(p, nesterov=True), "nesterov=True is out of range; allowed: nesterov=True only with momentum"),
        (lambda p: PiecewiseConstantDecay(SGD(p), [10], [0.1]), "values=[0.1] is out of range; allowed: 2 positive"),
        (lambda p: CosineDecay(SGD(p), decay_steps=0), "decay_steps=0 is out of range; allowed: a positive integer"),
        (lambda p: ReduceLROnPlateau(SGD(p), factor=1.0), "factor=1.0 is out of range; allowed: 0 < factor < 1"),
    ],
)
def test_bad_options_fail_at_construction(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make([torch.nn.Parameter(torch.zeros(1))])


def test_state_of_another_optimizer_is_refused() -> None:
    """A checkpoint from torch's Adam (older runs) cannot continue Keras' Adam exactly: one clear error."""
    w = torch.nn.Parameter(torch.ones(2))
    w.grad = torch.ones(2)
    theirs = torch.optim.Adam([w])
    theirs.step()
    with pytest.raises(ConfigError, match=r"saved by another optimizer .* Fix: start a new run"):
        Adam([w]).load_state_dict(theirs.state_dict())
