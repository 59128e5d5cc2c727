"""MLPClassifier: the seed's parameter counts, Keras defaults, training behaviour and argument checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.model_summary import ModelSummary

from fashion_lab import (
    ConfigError,
    FashionMNISTDataModule,
    FiniteGuard,
    MLPClassifier,
    NonFiniteLossError,
    TensorBoardFigures,
)
from fashion_lab.keras import optimizers as optim
from tests.helpers.trainer import make_trainer

DataFactory = Callable[..., FashionMNISTDataModule]


@pytest.mark.parametrize(("num_classes", "expected"), [(10, 101_770), (49, 106_801)])
def test_parameter_counts_match_keras_summary(num_classes: int, expected: int) -> None:
    model = MLPClassifier(num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in model.net.logits.parameters()) == 129 * num_classes  # the seed's "why 1,290?"


def test_summary_shows_keras_layers_with_shapes() -> None:
    summary = ModelSummary(MLPClassifier(), max_depth=2)
    rows = dict(zip(summary.layer_names, zip(summary.in_sizes, summary.out_sizes, strict=True), strict=True))
    assert rows["net.flatten"] == ([1, 1, 28, 28], [1, 784])
    assert rows["net.dense"] == ([1, 784], [1, 128])
    assert rows["net.logits"] == ([1, 128], [1, 10])


def test_forward_returns_logits() -> None:
    model = MLPClassifier(kernel_initializer="he_normal").eval()
    logits = model(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert not torch.allclose(logits.sum(dim=1), torch.ones(5))  # no softmax in forward
    assert (logits < 0).any()  # and no ReLU on the logits
    torch.testing.assert_close(model.predict_step(torch.rand(3, 28, 28), 0).sum(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    ("name", "cls", "lr", "extra"),
    [
        ("adam", optim.Adam, 1e-3, {"eps": 1e-7, "betas": (0.9, 0.999), "weight_decay": 0.0}),
        ("adamw", optim.AdamW, 1e-3, {"eps": 1e-7, "weight_decay": 0.004}),  # Keras' AdamW default, not torch's 0.01
        ("sgd", optim.SGD, 1e-2, {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
        ("rmsprop", optim.RMSprop, 1e-3, {"rho": 0.9, "eps": 1e-7, "centered": False}),
    ],
)
def test_optimizers_with_keras_defaults(name: str, cls: type, lr: float, extra: dict) -> None:
    opt = MLPClassifier(optimizer=name).configure_optimizers()["optimizer"]
    assert type(opt) is cls
    assert {k: opt.defaults[k] for k in ["lr", *extra]} == {"lr": lr, **extra}


def test_sgd_nesterov_weight_decay_and_clipping_reach_the_optimizer() -> None:
    model = MLPClassifier(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, clipnorm=1.0)
    opt = model.configure_optimizers()["optimizer"]
    assert (opt.defaults["lr"], opt.defaults["momentum"], opt.defaults["nesterov"]) == (0.1, 0.9, True)
    assert (opt.defaults["weight_decay"], opt.clipnorm, opt.global_clipnorm) == (1e-4, 1.0, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, r"dropout=1.0 is out of range; allowed: 0 <= dropout < 1"),
        ({"dropout": -0.1}, r"dropout=-0.1 is out of range"),
        ({"hidden": (128, 0)}, r"hidden=\(128, 0\) is out of range; allowed: positive integers"),
        ({"num_classes": 1}, r"num_classes=1 is out of range; allowed: an integer >= 2"),
        ({"class_names": ["a", "b"]}, r"class_names=\['a', 'b'\] is out of range; allowed: one name per class \(10\)"),
        ({"lr": 0.0}, r"lr=0.0 is out of range"),
        ({"l1": -1.0}, r"l1=-1.0 is out of range; allowed: l1 >= 0"),
        ({"weight_decay": -1e-4}, r"weight_decay=-0.0001 is out of range"),
        ({"momentum": 1.5}, r"momentum=1.5 is out of range; allowed: 0 <= momentum < 1"),
        ({"nesterov": True}, r"nesterov=True is out of range; allowed: nesterov=True only with momentum > 0"),
        ({"optimizer": "lbfgs"}, r"optimizer='lbfgs' is not supported; choose one of adam, adamw, rmsprop, sgd"),
        ({"clipnorm": 1.0, "clipvalue": 0.5}, r"clipnorm and clipvalue are both set; Keras allows one clipping option"),
        ({"global_clipnorm": 0.0}, r"global_clipnorm=0.0 is out of range; allowed: a positive number, or None"),
        (
            {"gradient_accumulation_steps": 0},
            r"gradient_accumulation_steps=0 is out of range; allowed: an integer",
        ),
        ({"plateau_factor": 2.0}, r"plateau_factor=2.0 is out of range; allowed: 0 < plateau_factor < 1"),
        ({"decay_steps": 0}, r"decay_steps=0 is out of range; allowed: a positive integer\."),
        ({"lr_schedule": "cosine"}, r"lr_schedule='cosine' is not supported; choose one of constant, cosine_decay"),
        ({"lr_schedule": "piecewise_constant_decay"}, r"needs boundaries and values, e.g. boundaries=\[1500, 3000\]"),
        ({"loss": "hinge"}, r"loss='hinge' is not supported; choose one of cross_entropy"),
        ({"momentum": 0.9}, r"momentum=0.9 has no effect with optimizer='adam'; allowed with: 'sgd', 'rmsprop'"),
        ({"hidden": (), "activity_regularizer": "l1"}, r"activity_regularizer='l1' needs a hidden layer"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MLPClassifier(**kwargs)


def fit_and_validate(model: MLPClassifier, dm: FashionMNISTDataModule, tmp_path: Path, epochs: int = 3) -> dict:
    trainer = make_trainer(tmp_path, max_epochs=epochs)
    trainer.fit(model, dm)
    return trainer.validate(model, dm, verbose=False)[0]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "mae", "categorical_hinge", "focal", "kl_divergence"])
def test_losses_learn_synthetic_set(loss: str, fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    # chance is 0.1; ~10% of synthetic images show another class's template, so the ceiling is ~0.9
    assert fit_and_validate(MLPClassifier(loss=loss, lr=3e-3), fashion(), tmp_path, epochs=5)["val/acc"] >= 0.8


def test_mse_pitfall_stays_near_chance(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    metrics = fit_and_validate(MLPClassifier(loss="mse", one_hot_targets=False, lr=3e-3), fashion(), tmp_path)
    assert metrics["val/acc"] <= 0.25  # 10 classes: chance is 0.1


def test_steps_per_execution_gives_identical_weights(fashion: DataFactory, tmp_path: Path) -> None:
    weights = []
    for k in (1, 8):
        L.seed_everything(0)
        model = MLPClassifier(kernel_regularizer="l2", kernel_constraint="max_norm", l2=1e-4)
        trainer = make_trainer(tmp_path, max_epochs=2)
        trainer.fit(model, fashion(steps_per_execution=k))
        weights.append(model.state_dict())
        assert trainer.global_step == 2 * 16  # 512 training images / batch 32, whatever K
    for name, w in weights[0].items():
        assert torch.equal(w, weights[1][name]), name


def test_constraints_hold_after_steps(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier(kernel_constraint="unit_norm", bias_constraint="non_neg", optimizer="sgd", lr=0.5)
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, fashion())
    for layer in (model.net.dense, model.net.logits):
        torch.testing.assert_close(layer.weight.norm(dim=1), torch.ones(len(layer.weight)), atol=1e-5, rtol=0)
        assert (layer.bias >= 0).all()


def test_logged_metric_names(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier(kernel_regularizer="l1", l1=1e-5)
    trainer = make_trainer(tmp_path, max_epochs=1, logger=CSVLogger(tmp_path), callbacks=[TensorBoardFigures()])
    trainer.fit(model, fashion(steps_per_execution=4))
    expected = {"train/loss", "train/acc", "train/reg_loss", "val/loss", "val/acc", "val/balanced_acc"}
    assert expected <= set(trainer.logged_metrics)
    assert 0.0 < trainer.logged_metrics["train/reg_loss"] < trainer.logged_metrics["train/loss"]
    result = trainer.test(model, fashion(), verbose=False)[0]
    assert {"test/loss", "test/acc", "test/balanced_acc", "test/class_acc/T-shirt_top"} <= set(result)
    assert model.class_names[0] == "T-shirt/top"  # from the datamodule


def test_non_finite_loss_names_epoch_and_step(fashion: DataFactory, tmp_path: Path) -> None:
    model = MLPClassifier()
    model.loss_fn = lambda logits, y: logits.sum() * float("nan")
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 0, step 4\."):
        make_trainer(tmp_path, limit_val_batches=0, callbacks=[FiniteGuard()]).fit(
            model, fashion(steps_per_execution=4)
        )
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 0, step 1\."):
        make_trainer(tmp_path, limit_val_batches=0, callbacks=[FiniteGuard()]).fit(model, fashion())
