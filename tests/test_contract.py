"""MLPClassifier is a standard LightningModule: the Trainer's options, callbacks, tuner, precision, compile and export.

Each test trains (or exports) on the tiny synthetic Fashion-MNIST and asserts a number or a file. The fast path
(steps_per_execution lists) refuses the Trainer options it cannot honour, naming the model's Keras option.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, StochasticWeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.tuner import Tuner

from fashion_lab import ConfigError, FashionMNISTDataModule, MLPClassifier
from tests.helpers.trainer import make_trainer

DataFactory = Callable[..., FashionMNISTDataModule]


def _first_step_weights(tmp_path: Path, dm: FashionMNISTDataModule, **trainer_kwargs) -> dict[str, torch.Tensor]:
    L.seed_everything(0)
    model = MLPClassifier(dropout=0.0, optimizer="sgd", lr=0.5)
    make_trainer(tmp_path, max_steps=1, limit_val_batches=0, **trainer_kwargs).fit(model, dm)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_gradient_clipping_changes_the_step_as_keras_global_clipnorm(fashion: DataFactory, tmp_path: Path) -> None:
    """Trainer(gradient_clip_val=c) (norm) gives the same first SGD step as the model's Keras global_clipnorm=c."""
    L.seed_everything(0)
    model = MLPClassifier(dropout=0.0, optimizer="sgd", lr=0.5, global_clipnorm=0.01)
    make_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, fashion())
    clipped = _first_step_weights(tmp_path, fashion(), gradient_clip_val=0.01)
    plain = _first_step_weights(tmp_path, fashion())
    moved = (plain["net.logits.weight"] - clipped["net.logits.weight"]).abs().max()
    assert moved > 1e-3  # clipping really changed the update
    for name, w in model.state_dict().items():
        torch.testing.assert_close(clipped[name], w, rtol=1e-5, atol=1e-6)


def test_gradient_clip_by_value(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    start = MLPClassifier(dropout=0.0, optimizer="sgd", lr=0.5).state_dict()
    after = _first_step_weights(tmp_path, fashion(), gradient_clip_val=1e-4, gradient_clip_algorithm="value")
    step = (after["net.logits.weight"] - start["net.logits.weight"]).abs().max().item()
    assert step == pytest.approx(0.5 * 1e-4, rel=1e-3)  # every |g| clipped to 1e-4, times lr


def test_accumulate_grad_batches_halves_the_optimizer_steps(fashion: DataFactory, tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(MLPClassifier(), fashion())
    assert trainer.global_step == 8  # 512 training images / batch 32 = 16 batches, one update per 2


def test_bf16_mixed_precision_learns(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier(lr=3e-3)
    trainer = make_trainer(tmp_path, max_epochs=3, precision="bf16-mixed")
    trainer.fit(model, fashion())
    assert model.net.dense.weight.dtype == torch.float32  # mixed: weights stay float32
    assert trainer.callback_metrics["val/acc"] >= 0.7


def test_swa_and_lr_monitor_log_the_schedule(fashion: DataFactory, tmp_path: Path) -> None:
    """A cosine schedule with warm-up, logged per step by LearningRateMonitor; SWA takes over at epoch 2."""
    L.seed_everything(0)
    model = MLPClassifier(lr=1e-3, lr_schedule="cosine_decay", warmup_steps=8, warmup_target=4e-3, alpha=0.1)
    logger = CSVLogger(tmp_path, name="contract")
    swa = StochasticWeightAveraging(swa_lrs=1e-3, swa_epoch_start=2)
    callbacks = [LearningRateMonitor(logging_interval="step"), swa]
    trainer = make_trainer(tmp_path, max_epochs=3, logger=logger, log_every_n_steps=1, callbacks=callbacks)
    trainer.fit(model, fashion())
    rows = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("lr-Adam")
    lrs = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert lrs[0] == pytest.approx(1e-3) and max(lrs[:16]) == pytest.approx(4e-3, rel=0.05)  # warm-up to the target
    assert lrs[15] < lrs[9]  # then the cosine decays
    assert swa._average_model is not None and swa.n_averaged.item() >= 1  # SWA averaged the weights
    assert trainer.callback_metrics["val/acc"] >= 0.5


class EpochLR(L.Callback):
    """The learning rate each epoch trained with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_reduce_on_plateau_in_both_paths(fashion: DataFactory, tmp_path: Path) -> None:
    """Keras' ReduceLROnPlateau on val/loss, stepped once per epoch: plain batches and steps_per_execution lists give
    the same rates (the same updates), and a too-high rate is cut when val/loss stops improving."""
    histories = []
    for k in (1, 4):
        L.seed_everything(0)
        model = MLPClassifier(lr=2.0, optimizer="sgd", lr_schedule="reduce_on_plateau", plateau_patience=0)
        probe = EpochLR()
        trainer = make_trainer(tmp_path, max_epochs=5, callbacks=[probe])
        trainer.fit(model, fashion(steps_per_execution=k))
        assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 5  # stepped after every epoch
        histories.append(probe.lrs)
    assert histories[0] == histories[1]
    assert histories[0][0] == 2.0 and min(histories[0]) <= 0.2  # at least one cut by plateau_factor 0.1


def test_reduce_on_plateau_without_validation_is_refused(fashion: DataFactory, tmp_path: Path) -> None:
    model = MLPClassifier(lr_schedule="reduce_on_plateau")
    with pytest.raises(ConfigError, match="monitors val/loss, which this run does not log"):
        make_trainer(tmp_path, max_epochs=1).fit(model, fashion(val_split=0.0, steps_per_execution=4))


def test_lr_find(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier()
    trainer = make_trainer(tmp_path, max_epochs=2)
    tuner = Tuner(trainer)
    finder = tuner.lr_find(
        model, datamodule=fashion(), min_lr=1e-5, max_lr=1.0, num_training=30, early_stop_threshold=None
    )
    suggestion = finder.suggestion()
    assert len(finder.results["lr"]) == 30 and 1e-5 <= suggestion <= 1.0
    assert model.hparams.lr == suggestion  # lr_find writes the suggestion into the model's `lr`


def test_compiled_model_fits(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier(lr=3e-3)
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(torch.compile(model), fashion())
    assert trainer.callback_metrics["val/acc"] >= 0.6


def test_load_from_checkpoint_restores_settings_and_predictions(fashion: DataFactory, tmp_path: Path) -> None:
    L.seed_everything(0)
    model = MLPClassifier(hidden=(64, 32), clipnorm=1.0, lr_schedule="exponential_decay")
    trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(model, fashion())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = MLPClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True).eval()
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert (loaded.hparams.hidden, loaded.hparams.clipnorm) == ((64, 32), 1.0)


def test_torch_export_and_onnx(tmp_path: Path) -> None:
    model = MLPClassifier(hidden=(32,)).eval()
    x = torch.rand(4, 1, 28, 28)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x))
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
    pytest.importorskip("onnxscript")
    model.to_onnx(tmp_path / "m.onnx", x, dynamo=True)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("trainer_kwargs", "fix"),
    [
        ({"gradient_clip_val": 1.0}, "MLPClassifier(global_clipnorm=1.0) (--model.global_clipnorm 1.0)"),
        ({"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"}, "MLPClassifier(clipvalue=0.5)"),
        ({"accumulate_grad_batches": 2}, "MLPClassifier(gradient_accumulation_steps=2)"),
    ],
)
def test_fast_path_refuses_with_the_keras_option(
    trainer_kwargs: dict, fix: str, fashion: DataFactory, tmp_path: Path
) -> None:
    trainer = make_trainer(tmp_path, **trainer_kwargs)
    with pytest.raises(ConfigError, match="cannot act inside the data's steps_per_execution=4 lists") as error:
        trainer.fit(MLPClassifier(), fashion(steps_per_execution=4))
    assert fix in str(error.value) and "automatic optimization" not in str(error.value)


def test_keras_options_work_in_the_fast_path(fashion: DataFactory, tmp_path: Path) -> None:
    """The fast path takes the model's Keras clipping, accumulation and schedule: the same updates as plain batches."""
    weights = []
    for k in (1, 4):
        L.seed_everything(0)
        model = MLPClassifier(
            global_clipnorm=0.5, gradient_accumulation_steps=2, lr_schedule="cosine_decay", warmup_steps=4,
            warmup_target=3e-3,
        )  # fmt: skip
        make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(model, fashion(steps_per_execution=k))
        weights.append(model.state_dict())
    for name, w in weights[0].items():
        torch.testing.assert_close(weights[1][name], w, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize(
    "schedule",
    [
        {"lr_schedule": "exponential_decay", "decay_steps": 4, "decay_rate": 0.5, "staircase": True},
        {"lr_schedule": "piecewise_constant_decay", "boundaries": [5, 10], "values": [3e-3, 1e-3, 3e-4]},
        {"lr_schedule": "one_cycle", "lr": 3e-3},
        {"lr_schedule": "cosine_decay", "alpha": 0.2},
    ],
    ids=lambda s: s["lr_schedule"],
)
def test_every_schedule_steps_alike_in_both_paths(schedule: dict, fashion: DataFactory, tmp_path: Path) -> None:
    """Each schedule counts optimizer steps: one epoch of 16 steps ends at the same rate and weights either way."""
    runs = []
    for k in (1, 4):
        L.seed_everything(0)
        model = MLPClassifier(**schedule)
        trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
        trainer.fit(model, fashion(steps_per_execution=k))
        runs.append((trainer.optimizers[0].param_groups[0]["lr"], model.state_dict()))
        assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 16
    assert runs[0][0] == runs[1][0]
    for name, w in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], w, rtol=0, atol=0, msg=name)
    expected = {"exponential_decay": 1e-3 * 0.5**4, "piecewise_constant_decay": 3e-4, "cosine_decay": 2e-4}
    if schedule["lr_schedule"] in expected:  # after 16 steps; cosine_decay's decay_steps default: the whole run
        assert runs[0][0] == pytest.approx(expected[schedule["lr_schedule"]])


def test_fast_path_schedule_length_and_max_steps_with_a_short_last_list(fashion: DataFactory, tmp_path: Path) -> None:
    """16 mini-batches an epoch in lists of 3 (the last holds 1): the schedule counts 16 steps an epoch, as plain
    batches do, and max_steps stops at the exact optimizer step even inside a list."""
    runs = []
    for k in (1, 3):
        L.seed_everything(0)
        model = MLPClassifier(lr_schedule="cosine_decay", alpha=0.1)
        trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
        trainer.fit(model, fashion(steps_per_execution=k))
        assert trainer.lr_scheduler_configs[0].scheduler.decay_steps == 32
        runs.append(model.state_dict())
    for name, w in runs[0].items():
        torch.testing.assert_close(runs[1][name], w, rtol=0, atol=0, msg=name)
    trainer = make_trainer(tmp_path, max_steps=8, limit_val_batches=0)
    trainer.fit(MLPClassifier(lr_schedule="cosine_decay"), fashion(steps_per_execution=3))
    assert trainer.global_step == 8 and trainer.lr_scheduler_configs[0].scheduler.decay_steps == 8


def test_training_statistics_are_exact_in_bf16(fashion: DataFactory, tmp_path: Path) -> None:
    """The epoch's sums are float32 whatever the precision: a bf16 sum of 31s drifts once past 256."""
    torch.manual_seed(0)
    model = MLPClassifier(dropout=0.0).to(torch.bfloat16)
    x, y = torch.rand(40, 32, 1, 28, 28, dtype=torch.bfloat16), torch.zeros(40, 32, dtype=torch.int64)
    y[:, 0] = 1  # class 0 wins everywhere (below): 31 correct answers a batch, 1,240 in all
    model.net.logits.bias.data[0] = 100.0
    for xb, yb in zip(x, y, strict=True):
        model.train_loss(xb, yb)
    assert model.train_sums.dtype == torch.float32
    assert model.train_sums[2:].tolist() == [1240.0, 1280.0]
    trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, precision="bf16-true")
    trainer.fit(MLPClassifier(), fashion())
    assert 0.0 < trainer.callback_metrics["train/acc"].item() < 1.0
