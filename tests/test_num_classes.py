"""`num_classes` from the data wherever the model is used: a model attached to data (or a checkpoint) with another
number of classes stops before its first step with one message in a Python/YAML user's words, never an IndexError
from the loss; the CLI, which links data.num_classes to model.num_classes, keeps its own words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fashion_lab import ConfigError, K49DataModule, MLPClassifier
from fashion_lab.cli.user_errors import user_error_message
from fashion_lab.errors import ClassCountError
from tests.helpers.trainer import make_trainer


class Probe(L.Callback):
    """Counts the training steps that ran."""

    steps = 0

    def on_train_batch_start(self, *args) -> None:
        Probe.steps += 1


DATA_WORDS = (
    "the model has num_classes=10, but the data module K49DataModule has 49 classes. Fix: make the model with "
    "num_classes=49: MLPClassifier(num_classes=dm.num_classes) in Python, `num_classes: 49` in the model's YAML config."
)


@pytest.mark.parametrize("method", ["fit", "validate", "test", "predict"])
def test_default_model_on_k49_stops_before_the_first_step(
    k49: Callable[..., K49DataModule], tmp_path: Path, method: str
) -> None:
    Probe.steps = 0
    trainer = make_trainer(tmp_path, callbacks=[Probe()])
    with pytest.raises(ClassCountError) as e:
        getattr(trainer, method)(MLPClassifier(), datamodule=k49(batch_size=16))
    assert str(e.value) == DATA_WORDS and isinstance(e.value, ConfigError)
    assert Probe.steps == 0


def test_model_with_the_data_classes_trains_on_k49(k49: Callable[..., K49DataModule], tmp_path: Path) -> None:
    dm = k49(batch_size=16)
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(MLPClassifier(num_classes=dm.num_classes), datamodule=dm)
    assert trainer.global_step == 25  # 392 of K49's 490 synthetic training images, in batches of 16
    assert 0.0 <= trainer.callback_metrics["val/acc"].item() <= 1.0


def test_checkpoint_with_other_classes_is_refused_in_plain_words(
    k49: Callable[..., K49DataModule], tmp_path: Path
) -> None:
    path = tmp_path / "k49.ckpt"
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(MLPClassifier(num_classes=49), datamodule=k49(batch_size=16))
    trainer.save_checkpoint(path)
    with pytest.raises(ClassCountError) as e:
        make_trainer(tmp_path).test(
            MLPClassifier(),
            ckpt_path=path,
            dataloaders=DataLoader(TensorDataset(torch.zeros(2, 28, 28), torch.zeros(2).long())),
        )
    assert str(e.value) == (
        "the checkpoint was trained for 49 classes, but this model has num_classes=10. Fix: load it as "
        "MLPClassifier.load_from_checkpoint(path), which takes num_classes=49 from it, with data of 49 classes; "
        "or train a new model."
    )
    assert "--data" not in str(e.value) and "linked" not in str(e.value)
    assert MLPClassifier.load_from_checkpoint(path, weights_only=True).hparams.num_classes == 49


def test_the_cli_words_the_same_errors_its_own_way() -> None:
    checkpoint = ClassCountError("plain words", model=49, other=10, source="checkpoint")
    assert user_error_message(checkpoint).startswith(
        "the checkpoint was trained for 10 classes, but this model (linked from the data) has 49. Fix: use the data "
        "module the checkpoint was trained on (its run's config.yaml; for picture files, --data.classes"
    )
    data = ClassCountError("plain words", model=10, other=49, source="data")
    assert user_error_message(data) == (
        "the model has 10 classes, but the data has 49. Fix: leave model.num_classes to the link from "
        "data.num_classes (do not set it in a config)."
    )
