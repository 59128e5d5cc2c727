"""The tutorial's printed runs as its Keras calls ran them (configs/tutorial_as_printed*.yaml): the unscaled test
images, Keras' schedule for steps_per_epoch=800 (batch 60, 800 steps an epoch), tf.keras 2's MSE broadcast of the
integer label, and cross-entropy from the logits (not capped by clipped probabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from fashion_lab.keras.losses import Loss
from fashion_lab.studies.experiments import GRIDS, TUTORIAL_AS_PRINTED, TUTORIAL_MSE
from tests.helpers.commands import QUIET
from tests.helpers.paths import FIXTURES, REPO

CONFIGS = {
    "cross_entropy, as printed": REPO / "configs" / "tutorial_as_printed.yaml",
    "mse on integer labels, as printed": REPO / "configs" / "tutorial_as_printed_mse.yaml",
}


def flat(config: dict) -> dict:
    """A config as the study's overrides name its options: data.batch_size, model.loss, test_weights, ..."""
    out = {f"data.{k}": v for k, v in config["data"]["init_args"].items()}
    out |= {f"model.{k}": v for k, v in config["model"].items()}
    out |= {f"trainer.{k}": v for k, v in config["trainer"].items()}
    return out | {k: v for k, v in config.items() if k not in ("data", "model", "trainer")}


@pytest.mark.parametrize("variant", CONFIGS)
def test_the_study_runs_what_the_configs_say(variant: str) -> None:
    """The study's overrides of the seed's settings and the config files, read side by side, give the same fit."""
    seed = flat(yaml.safe_load((REPO / "configs" / "fashion_mnist.yaml").read_text()))
    seed |= {"test_weights": "best", "data.eval_batch_size": 1024, "data.unscaled_test_images": False}
    seed |= {"model.one_hot_targets": True}
    printed = flat(yaml.safe_load(CONFIGS[variant].read_text()))
    assert seed | GRIDS["tutorial"][variant] == {**seed, **printed}
    assert GRIDS["tutorial"][variant] == TUTORIAL_AS_PRINTED | ({} if "cross" in variant else TUTORIAL_MSE)


def test_unscaled_test_images_are_the_raw_pixels(fashion) -> None:
    dm = fashion(unscaled_test_images=True)
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    raw = dm.test_set.images[: len(x)].float().unsqueeze(1)
    assert torch.equal(x, raw) and x.max() == raw.max() > 1  # 0..255, not x / 255
    assert x.min() >= 0 and x.max() <= 255
    dm.setup("fit")  # training and validation stay scaled
    assert next(iter(dm.train_dataloader()))[0][0].max() <= 1.0


def test_scaled_by_default_also_with_normalize(fashion) -> None:
    dm = fashion()
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    assert torch.allclose(x, dm.test_set.images[: len(x)].float().unsqueeze(1) / 255)
    normalized = fashion(normalize=True, unscaled_test_images=True)
    normalized.setup("test")
    assert torch.equal(next(iter(normalized.test_dataloader()))[0], dm.test_set.images[: len(x)].float().unsqueeze(1))


def test_mse_on_integer_labels_is_tf_keras_2s_broadcast() -> None:
    """tf.keras 2 expanded y (N,) to (N, 1) against the (N, 10) softmax: per image mean_k (y - p_k)^2, which is
    y² - 0.2·y + Σ_k p_k² / 10 for any probabilities (the closed form behind the printed 27.61)."""
    logits, y = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 10
    p = logits.softmax(dim=1)
    loss = Loss("mse", one_hot_targets=False)(logits, y)
    keras = ((y[:, None].float() - p) ** 2).mean(dim=1).mean()  # (N, 1) - (N, 10), mean over the last axis
    closed = (y.float() ** 2 - 0.2 * y + (p**2).sum(dim=1) / 10).mean()
    assert torch.allclose(loss, keras) and torch.allclose(loss, closed)
    uniform = Loss("mse", one_hot_targets=False)(torch.zeros(10, 10), torch.arange(10))  # balanced labels 0..9
    assert uniform.item() == pytest.approx(28.5 - 0.2 * 4.5 + 0.01)  # 27.61: the printed loss' floor


def test_cross_entropy_comes_from_the_logits_not_clipped_probabilities() -> None:
    """Keras' softmax output keeps its logits (_keras_logits), so a logit gap of 3000 costs 3000, not -log(1e-7)."""
    logits = torch.tensor([[3000.0, 0.0, -5.0, 0.0]])
    assert Loss("cross_entropy")(logits, torch.tensor([1])).item() == pytest.approx(3000.0)


@pytest.mark.real_data
@pytest.mark.slow
def test_as_printed_trains_at_batch_60_with_800_steps_an_epoch(tmp_path: Path) -> None:
    """Keras' schedule for fit(..., validation_split=0.2, steps_per_epoch=800) and no batch_size: ceil(48000/800)."""
    from fashion_lab.cli import make_cli

    class Sizes(L.Callback):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            self.sizes += [len(y) for _, y in batch] if isinstance(batch, list) else [len(batch[1])]

    sizes = Sizes()
    config = ["--config", str(CONFIGS["cross_entropy, as printed"]), "--trainer.max_epochs", "1"]
    logs = ["--trainer.logger.init_args.save_dir", str(tmp_path), "--test_after_fit", "false"]
    cli = make_cli(["fit", *config, *QUIET, *logs], callbacks=[sizes])
    assert cli.trainer.global_step == 800  # optimizer steps in the epoch
    assert sizes.sizes == [60] * 800
    assert len(cli.datamodule.val_set) == 12_000


def test_test_loss_is_the_mean_over_images_with_a_short_last_batch(fashion, tmp_path: Path) -> None:
    """A batch of 32 on 200 test images leaves a last batch of 8: the loss is still the mean over the 200 images."""
    from fashion_lab import MLPClassifier
    from tests.helpers.trainer import make_trainer

    model, dm = MLPClassifier(), fashion(eval_batch_size=32)
    (scores,) = make_trainer(tmp_path).test(model, datamodule=dm, verbose=False)
    x, y = dm.test_set.__getitems__(list(range(len(dm.test_set))))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model.eval()(x), y)
    assert len(dm.test_set) % 32 and scores["test/loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_the_report_section_from_the_committed_study(tmp_path: Path) -> None:
    """Built from the committed study (a copy) and the real-Keras fixture: each printed value with its verdict."""
    import shutil

    from fashion_lab.studies.storage import open_storage
    from fashion_lab.studies.tutorial_report import (
        PRINTED,
        inside,
        metric_values,
        shown_digits,
        spread,
        tutorial_section,
    )

    shutil.copy(REPO / "reports" / "studies.db", tmp_path / "studies.db")
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    lines = tutorial_section(storage, FIXTURES / "keras_tutorial_runs.json")
    rows = [line for line in lines if line.startswith("| first program") or line.startswith("| second program")]
    assert lines[0] == "## The tutorial's printed numbers" and len(rows) == 4
    from fashion_lab.studies.report import find

    study, spec = find(storage, "tutorial-fashionmnist")
    from fashion_lab.studies.results import grid_results

    results = grid_results(study, spec)
    for row, (label, variant, metric, value) in zip(rows, PRINTED, strict=True):
        values = metric_values(results[variant], metric, scaled=False)
        assert len(values) >= 5 and row.startswith(f"| {label} |")
        assert f"| {inside(value, values)} |" in row
        assert f"| {spread(values, shown_digits(variant, metric))} ({len(values)} seeds) |" in row
        assert "tf.keras 2.15.0" in row  # real Keras beside it
    assert inside(1.0, [2.0, 3.0]).startswith("outside") and inside(2.5, [2.0, 3.0]) == "inside"
    assert any("class 2 is Pullover" in line for line in lines)
    keras = json.loads((FIXTURES / "keras_tutorial_runs.json").read_text())["runs"]
    assert {r["optimizer_iterations"] for r in keras if "optimizer_iterations" in r} == {4000}  # 5 × 800, batch 60
