"""The tutorial's slip caught: a trained model evaluated or asked to predict on inputs far outside its training
range (0..255 for x / 255) warns once, naming what it saw and the fix; never in training, never on scaled data,
pictures or normalised data."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from fashion_lab import MLPClassifier
from fashion_lab.cli import cli_main
from fashion_lab.input_range import InputScaleWarning
from fashion_lab.synthetic import make_images
from tests.helpers.commands import QUIET
from tests.helpers.photos import write_photos
from tests.helpers.trainer import make_trainer


def trained(dm, tmp_path: Path) -> MLPClassifier:
    model = MLPClassifier(hidden=[16])
    make_trainer(tmp_path, max_steps=3).fit(model, datamodule=dm)
    return model


def scale_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, InputScaleWarning)]


@pytest.fixture
def caught():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        yield record


def test_the_training_range_is_learned_from_the_first_batch(fashion, tmp_path: Path) -> None:
    model = trained(fashion(), tmp_path)
    assert (model.input_low.item(), model.input_high.item()) == (0.0, 1.0)
    assert set(model.state_dict()) >= {"input_low", "input_high"}  # saved, so a loaded model knows it
    dm = fashion(normalize=True)
    normalized = trained(dm, tmp_path)
    expected = (-dm.mean / dm.std, (1 - dm.mean) / dm.std)  # [0, 1] standardised
    assert (normalized.input_low.item(), normalized.input_high.item()) == pytest.approx(expected, rel=1e-6)


def test_trainer_test_on_unscaled_images_warns_once(fashion, tmp_path: Path, caught) -> None:
    model = trained(fashion(), tmp_path)
    (scores,) = make_trainer(tmp_path).test(model, datamodule=fashion(unscaled_test_images=True, eval_batch_size=32))
    [message] = scale_warnings(caught)  # 7 batches, one line
    assert "\n" not in message and message.startswith("MLPClassifier: inputs reach 25")
    assert "the training data were in [0, 1]" in message
    assert message.endswith("Fix: scale them like the training data (x / 255).")
    assert scores["test/loss"] > 1  # the tutorial's loss in the tens, on a tiny model


def test_trainer_predict_and_a_direct_call_warn_once(fashion, tmp_path: Path, caught) -> None:
    model = trained(fashion(), tmp_path)
    make_trainer(tmp_path).predict(model, datamodule=fashion(unscaled_test_images=True))
    assert len(scale_warnings(caught)) == 1
    fresh = MLPClassifier.load_from_checkpoint(save(model, tmp_path), weights_only=True).eval()
    fresh(torch.full((4, 1, 28, 28), 255.0))
    fresh(torch.full((4, 1, 28, 28), 255.0))
    assert len(scale_warnings(caught)) == 2  # once for the loaded copy too: the range came with its state dict


def save(model: MLPClassifier, tmp_path: Path) -> Path:
    trainer = make_trainer(tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    return tmp_path / "m.ckpt"


def test_silent_in_training_and_on_scaled_or_normalised_data(fashion, tmp_path: Path, caught) -> None:
    model = trained(fashion(), tmp_path)
    model.train()(torch.full((2, 1, 28, 28), 255.0))  # training mode: never checked
    make_trainer(tmp_path).test(model, datamodule=fashion())
    make_trainer(tmp_path).predict(model, datamodule=fashion())
    normalized = trained(fashion(normalize=True), tmp_path)
    make_trainer(tmp_path).test(normalized, datamodule=fashion(normalize=True))
    assert scale_warnings(caught) == []
    make_trainer(tmp_path).test(normalized, datamodule=fashion(normalize=True, unscaled_test_images=True))
    assert "then the training data's mean and std" in scale_warnings(caught)[0]


def test_silent_on_pictures_and_loud_on_the_cli_test(
    fashion_checkpoint: Path, fashion_dir: Path, tmp_path: Path, capsys, caught
) -> None:
    """The CLI: pictures (through ImageFilesDataModule, scaled as the normalised training data) pass; the tutorial's
    unscaled test prints the warning once."""
    paths = write_photos(make_images(6, num_classes=10, seed=1)[0], tmp_path / "photos")
    data = ["--data", "ImageFilesDataModule", "--data.paths", f"[{', '.join(map(str, paths))}]"]
    cli_main(["predict", "--ckpt_path", str(fashion_checkpoint), *data, *QUIET, "--output", str(tmp_path)])
    assert scale_warnings(caught) == []
    data = ["--data.data_dir", str(fashion_dir), "--data.unscaled_test_images", "true"]
    cli_main(["test", "--ckpt_path", str(fashion_checkpoint), *data, *QUIET])
    assert len(scale_warnings(caught)) == 1


def test_learned_from_plain_dataloaders_and_steps_per_execution_lists(fashion, tmp_path: Path) -> None:
    """default_collate makes a plain batch a list [x, y]; a steps_per_execution batch is a list of (x, y)."""
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(64, 1, 28, 28) * 0.5 + 0.25  # [0.25, 0.75]: not an image's [0, 1]
    model = MLPClassifier(hidden=[16])
    make_trainer(tmp_path, max_steps=2).fit(model, DataLoader(TensorDataset(x, torch.arange(64) % 10), batch_size=32))
    first_batch = (x[:32].min().item(), x[:32].max().item())
    assert (model.input_low.item(), model.input_high.item()) == pytest.approx(first_batch)
    model = trained(fashion(steps_per_execution=4), tmp_path)
    assert (model.input_low.item(), model.input_high.item()) == (0.0, 1.0)
