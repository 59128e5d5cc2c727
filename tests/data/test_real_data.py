"""Real Fashion-MNIST from Debian's dataset-fashion-mnist (installed by .ci/run): counts, split and pixel statistics."""

from __future__ import annotations

import gzip
import hashlib

import pytest
import torch

from fashion_lab import FashionMNISTDataModule
from fashion_lab.sources import read_idx
from tests.helpers.paths import REAL_FASHION

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> FashionMNISTDataModule:
    """From an empty data_dir with downloads off, the module must find Debian's copy."""
    dm = FashionMNISTDataModule(data_dir=tmp_path_factory.mktemp("empty"), download=False)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_debian_copy_matches_upstream_content() -> None:
    md5 = hashlib.md5(gzip.decompress((REAL_FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest()
    assert md5 == "15d484375f8d13e6eb1aabb0c3f46965"  # upstream's uncompressed md5 (shared/DATASETS.md)


def test_counts_and_split(dm: FashionMNISTDataModule) -> None:
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (48_000, 12_000, 10_000)
    all_labels = torch.cat([dm.train_set.labels, dm.val_set.labels])
    assert torch.bincount(all_labels).tolist() == [6_000] * 10
    assert torch.bincount(dm.test_set.labels).tolist() == [1_000] * 10


def test_keras_split_val_is_file_rows_48000_to_59999(dm: FashionMNISTDataModule) -> None:
    rows = read_idx(REAL_FASHION / "train-images-idx3-ubyte.gz", "images")
    assert torch.equal(dm.val_set.images, torch.from_numpy(rows[48_000:].copy()))
    assert torch.equal(dm.train_set.images[:5], torch.from_numpy(rows[:5].copy()))


def test_train_epoch_batches_and_pixel_mean(dm: FashionMNISTDataModule) -> None:
    shapes, total = set(), 0.0
    for x, y in dm.train_dataloader():
        shapes.add((tuple(x.shape), x.dtype, y.dtype))
        total += x.double().sum().item()
    n_batches = len(dm.train_dataloader())
    assert n_batches == 1_500 and shapes == {((32, 1, 28, 28), torch.float32, torch.int64)}
    assert total / (48_000 * 784) == pytest.approx(0.286, abs=0.002)
    assert dm.train_set.images.dtype == torch.uint8 and dm.train_set.images.nbytes == 48_000 * 784
