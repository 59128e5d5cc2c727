"""Real Fashion-MNIST: a trained model on pictures made the way a user's would be, and its ONNX export against the
checkpoint on the whole test set."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fashion_lab import FashionMNISTDataModule
from fashion_lab.cli import cli_main
from fashion_lab.export import main as export_main
from tests.helpers.checkpoints import checkpoint_probs
from tests.helpers.commands import QUIET, run_cli
from tests.helpers.photos import write_photos

pytestmark = [pytest.mark.slow, pytest.mark.real_data]
N_PHOTOS = 2_000  # the first 2,000 test images: ±0.8 points of sampling noise on an accuracy near 0.86


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's network after 2 epochs on real Fashion-MNIST, with `normalize` (so the statistics must travel)."""
    folder = tmp_path_factory.mktemp("real_fit")
    fit = ["fit", "--trainer.max_epochs", "2", "--data.normalize", "true", "--test_after_fit", "false", *QUIET]
    cli_main([*fit, "--trainer.logger.init_args.save_dir", str(folder)])
    return folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor]:
    dm = FashionMNISTDataModule(data_dir=tmp_path_factory.mktemp("empty"), download=False)
    dm.setup("test")
    return dm.test_set.images, dm.test_set.labels


def test_photos_within_3_points_of_the_test_images(real_checkpoint: Path, test_set: tuple, tmp_path: Path) -> None:
    images, labels = test_set
    paths = write_photos(images[:N_PHOTOS].numpy(), tmp_path / "photos")  # inverted, tinted, upscaled, JPEG
    data = ["--data", "ImageFilesDataModule", "--data.paths", str(tmp_path / "photos")]
    result = run_cli(["predict", "--ckpt_path", str(real_checkpoint), *data, *QUIET], tmp_path)  # as a user runs it
    assert result.returncode == 0, result.stderr[-3000:]
    csv_path = re.search(r"Wrote 2,000 predictions to (\S+)", result.stdout).group(1)
    with open(tmp_path / csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    photo_acc = np.mean([int(r["pred"]) == y for r, y in zip(rows, labels[:N_PHOTOS].tolist(), strict=True)])
    predicted = checkpoint_probs(real_checkpoint, images).argmax(dim=1)
    same_acc = (predicted[:N_PHOTOS] == labels[:N_PHOTOS]).float().mean().item()
    test_acc = (predicted == labels).float().mean().item()
    print(f"\nphotos {photo_acc:.4f}, the same {N_PHOTOS:,} test images {same_acc:.4f}, all 10,000 {test_acc:.4f}")
    assert test_acc >= 0.82 and abs(photo_acc - same_acc) <= 0.03 and abs(photo_acc - test_acc) <= 0.03


def test_onnx_equals_the_checkpoint_on_the_test_set(real_checkpoint: Path, test_set: tuple, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install -e '.[onnx]'")
    images, _ = test_set
    export_main(["--ckpt_path", str(real_checkpoint), "--output", str(tmp_path / "model.onnx")])
    (probs,) = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"image": images.numpy()})
    expected = checkpoint_probs(real_checkpoint, images)
    diff = (torch.from_numpy(probs) - expected).abs().max().item()
    print(f"\nONNX vs checkpoint on {len(images):,} test images: max |Δp| = {diff:.2e}")
    assert probs.shape == (10_000, 10) and diff <= 1e-5
    assert torch.equal(torch.from_numpy(probs).argmax(dim=1), expected.argmax(dim=1))
