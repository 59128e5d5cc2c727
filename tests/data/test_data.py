"""Data modules on synthetic files in the official formats: lookup order, splits, batches, and every bad file."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fashion_lab import (
    ConfigError,
    DataError,
    FashionMNISTDataModule,
    K49DataModule,
    KMNISTDataModule,
    MLPClassifier,
    MNISTDataModule,
)
from fashion_lab.checkpoints import training_scaling
from fashion_lab.data import mean_std
from fashion_lab.synthetic import idx_bytes, make_images, write_idx_set, write_k49
from tests.helpers.paths import FIXTURES
from tests.helpers.trainer import make_trainer


def mnist(tmp_path: Path, **kwargs) -> MNISTDataModule:
    """MNIST on synthetic files in tmp_path (MNIST has no system-wide copy, so nothing else can be found)."""
    return MNISTDataModule(data_dir=tmp_path, download=False, **kwargs)


def test_classes_known_without_io(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    assert FashionMNISTDataModule(data_dir=missing).classes[6] == "Shirt"
    assert FashionMNISTDataModule(data_dir=missing).num_classes == 10
    assert KMNISTDataModule(data_dir=missing).classes == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    k49 = K49DataModule(data_dir=missing)
    assert (k49.num_classes, k49.classes[0], k49.classes[48]) == (49, "あ", "ゝ")
    assert not missing.exists()


def test_k49_classes_match_official_classmap() -> None:
    rows = (FIXTURES / "k49_classmap.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert K49DataModule.classes == tuple(row.split(",")[2] for row in rows)
    assert [f"U+{ord(c):04X}" for c in K49DataModule.classes] == [row.split(",")[1] for row in rows]


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_finds_files_in_data_dir(tmp_path: Path, gz: bool, layout: str) -> None:
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    write_idx_set(folder, n_train=100, n_test=30, gz=gz)
    dm = mnist(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (80, 20, 30)
    expected, _ = make_images(100, 10, seed=0)
    assert torch.equal(dm.train_set.images, torch.from_numpy(expected[:80]))


def test_keras_split_is_the_last_fraction_in_file_order(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=50, n_test=10)
    dm = mnist(tmp_path, val_split=0.3)
    dm.setup("fit")
    images, labels = make_images(50, 10, seed=0)
    assert torch.equal(dm.val_set.images, torch.from_numpy(images[35:]))  # Keras: split_at = int(50 * 0.7) = 35
    assert torch.equal(dm.val_set.labels, torch.from_numpy(labels[35:].astype(np.int64)))


def test_random_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=60, n_test=10)
    first, again, other = (mnist(tmp_path, split="random", seed=s) for s in (1, 1, 2))
    for dm in (first, again, other):
        dm.setup("fit")
    assert torch.equal(first.val_set.images, again.val_set.images)
    assert not torch.equal(first.val_set.images, other.val_set.images)
    rows = lambda s: {bytes(img.numpy()) for img in s.images}  # noqa: E731
    assert len(rows(first.train_set) | rows(first.val_set)) == len(rows(first.train_set)) + len(rows(first.val_set))


def test_batches_are_float_in_unit_range_and_never_drop(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=100, n_test=45)
    dm = mnist(tmp_path, batch_size=16, eval_batch_size=16)
    dm.setup("fit")
    dm.setup("test")
    x, y = next(iter(dm.train_dataloader()))
    assert (x.shape, x.dtype, y.dtype) == ((16, 1, 28, 28), torch.float32, torch.int64)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert sum(len(y) for _, y in dm.val_dataloader()) == 20
    assert [len(y) for _, y in dm.test_dataloader()] == [16, 16, 13]
    assert dm.train_set.images.dtype == torch.uint8  # held as bytes, converted per batch


def test_train_shuffle_is_reproducible_per_epoch(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=100, n_test=10)
    orders = []
    for _ in range(2):
        dm = mnist(tmp_path, batch_size=100, val_split=0.0)
        dm.setup("fit")
        loader = dm.train_dataloader()
        epochs = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            epochs.append(next(iter(loader))[1])
        orders.append(epochs)
    assert torch.equal(orders[0][0], orders[1][0]) and torch.equal(orders[0][1], orders[1][1])
    assert not torch.equal(orders[0][0], orders[0][1])
    assert sorted(orders[0][0].tolist()) == sorted((torch.arange(100) % 10).tolist())


def test_steps_per_execution_yields_the_same_mini_batches(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=250, n_test=10)
    plain, grouped = mnist(tmp_path, batch_size=16), mnist(tmp_path, batch_size=16, steps_per_execution=4)
    plain.setup("fit")
    grouped.setup("fit")
    flat = [mb for execution in grouped.train_dataloader() for mb in execution]
    expected = list(plain.train_dataloader())
    assert len(flat) == len(expected) == 13  # 200 training samples: 12 × 16 + 8
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(flat, expected, strict=True))
    assert sum(len(y) for _, y in grouped.val_dataloader()) == 50


def test_no_validation_set(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=40, n_test=10)
    dm = mnist(tmp_path, val_split=0.0)
    dm.setup("fit")
    assert len(dm.train_set) == 40 and dm.val_dataloader() == []


def test_normalize_uses_training_statistics(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=100, n_test=20)
    dm = mnist(tmp_path, normalize=True, batch_size=80)
    dm.setup("test")  # test alone still standardises with the training split's statistics
    images = torch.from_numpy(make_images(100, 10, seed=0)[0][:80]).double() / 255
    assert dm.mean == pytest.approx(images.mean().item()) and dm.std == pytest.approx(images.std(False).item())
    x, _ = next(iter(dm.train_dataloader()))
    assert x.double().mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x.double().std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_normalize_statistics_travel_in_checkpoints(tmp_path: Path) -> None:
    """state_dict holds the training statistics; Lightning saves it under the class name and restores it after setup."""
    write_idx_set(tmp_path, n_train=100, n_test=20)
    dm = mnist(tmp_path, normalize=True)
    dm.setup("fit")
    model = MLPClassifier()
    trainer = make_trainer(tmp_path, max_epochs=0, limit_val_batches=0)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert checkpoint["MNISTDataModule"] == {"mean": dm.mean, "std": dm.std} and dm.std < 0.9
    assert training_scaling(checkpoint) == {"mean": dm.mean, "std": dm.std}
    restored = mnist(tmp_path)  # normalize off: only the restored statistics can standardise its test set
    make_trainer(tmp_path).test(model, restored, ckpt_path=tmp_path / "m.ckpt", verbose=False)
    x, _ = next(iter(restored.test_dataloader()))
    expected = (torch.from_numpy(make_images(20, 10, seed=1)[0]).float() / 255 - dm.mean) / dm.std
    torch.testing.assert_close(x[:, 0], expected)


def test_old_normalized_checkpoint_without_statistics_is_refused() -> None:
    assert training_scaling({"datamodule_hyper_parameters": {"normalize": False}}) == {"mean": 0.0, "std": 1.0}
    with pytest.raises(DataError, match=r"trained with normalize=True but does not hold the training data's mean"):
        training_scaling({"datamodule_hyper_parameters": {"normalize": True}})


def test_mean_std_from_histogram() -> None:
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    mean, std = mean_std(images)
    x = images.double() / 255
    assert (mean, std) == (pytest.approx(x.mean().item()), pytest.approx(x.std(unbiased=False).item()))


def test_k49_reads_official_npz_format(tmp_path: Path) -> None:
    write_k49(tmp_path, n_train=98, n_test=49)
    dm = K49DataModule(data_dir=tmp_path, download=False, batch_size=8, eval_batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (78, 20, 49)
    x, y = next(iter(dm.test_dataloader()))
    assert (x.shape, y.dtype, y.max().item()) == ((8, 1, 28, 28), torch.int64, 7)
    assert dm.test_set.labels.max().item() == 48


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size=0 is out of range; allowed: a positive integer."),
        ({"val_split": 1.0}, "val_split=1.0 is out of range; allowed: a fraction, 0 <= val_split < 1 (0: none)."),
        ({"val_split": -0.1}, "val_split=-0.1 is out of range"),
        ({"split": "stratified"}, "split='stratified' is not supported; choose one of keras, random."),
        ({"num_workers": -1}, "num_workers=-1 is out of range; allowed: an integer >= 0."),
        ({"steps_per_execution": 0}, "steps_per_execution=0 is out of range; allowed: a positive integer."),
        ({"eval_batch_size": 2.5}, "eval_batch_size=2.5 is out of range; allowed: a positive integer."),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MNISTDataModule(**kwargs)


def test_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MNIST file train-images-idx3-ubyte.gz not found .* Fix: run with download"):
        mnist(tmp_path).prepare_data()


def corrupt(tmp_path: Path, name: str, data: bytes) -> None:
    write_idx_set(tmp_path, n_train=20, n_test=10, gz=False)
    (tmp_path / name).write_bytes(data)


def test_truncated_gz_is_named(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=20, n_test=10)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=rf"{path} is unreadable or truncated .* Fix: delete it"):
        mnist(tmp_path).setup("fit")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28), np.uint8)), "magic number 0x00000802, expected"),
        ("train-labels-idx1-ubyte", idx_bytes(np.zeros((20, 28, 28), np.uint8)), "not an IDX labels file"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28), np.uint8))[:-5], "is truncated or padded"),
        ("train-images-idx3-ubyte", b"", "magic number nothing"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 32, 32), np.uint8)), r"shape \(32, 32\), expected 28×28"),
        ("train-labels-idx1-ubyte", idx_bytes(np.zeros(19, np.uint8)), "has 20 images but .* has 19 labels"),
        ("train-labels-idx1-ubyte", idx_bytes(np.full(20, 10, np.uint8)), r"labels in 10..10, expected 0..9"),
    ],
)
def test_bad_idx_files_are_named(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    corrupt(tmp_path, name, data)
    with pytest.raises(DataError, match=message):
        mnist(tmp_path).setup("fit")


@pytest.mark.parametrize(
    ("array", "key", "message"),
    [
        (np.zeros((5, 28, 28), np.uint8), "images", r"arrays \['images'\], expected one array under the key 'arr_0'"),
        (np.zeros((5, 784), np.uint8), "arr_0", r"shape \(5, 784\), expected 3 dimensions"),
        (np.zeros((5, 28, 28), np.float32), "arr_0", "float32 array"),
        (np.zeros((5, 28, 28), np.int64), "arr_0", "holds int64 images, expected uint8"),
    ],
)
def test_bad_npz_files_are_named(tmp_path: Path, array: np.ndarray, key: str, message: str) -> None:
    write_k49(tmp_path, n_train=5, n_test=5)
    np.savez_compressed(tmp_path / "k49-train-imgs.npz", **{key: array})
    with pytest.raises(DataError, match=message):
        K49DataModule(data_dir=tmp_path, download=False).setup("fit")


def test_truncated_npz_is_named(tmp_path: Path) -> None:
    write_k49(tmp_path, n_train=5, n_test=5)
    path = tmp_path / "k49-test-labels.npz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"k49-test-labels\.npz is unreadable or truncated"):
        K49DataModule(data_dir=tmp_path, download=False).setup("test")


def test_corrupt_file_in_data_dir_is_reported_not_skipped(tmp_path: Path) -> None:
    """A broken copy in data_dir must not silently fall through to the system copy."""
    write_idx_set(tmp_path, n_train=20, n_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"garbage"))
    with pytest.raises(DataError, match=str(tmp_path / "t10k-labels-idx1-ubyte.gz")):
        FashionMNISTDataModule(data_dir=tmp_path).setup("test")


def test_degenerate_splits_are_refused_with_the_numbers(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=100, n_test=10)
    with pytest.raises(ConfigError, match=r"val_split=0.2 leaves 80 of the training file's 100 images to train on, "
                       r"fewer than one batch of 90\. Fix:"):  # fmt: skip
        mnist(tmp_path, batch_size=90).setup("fit")
    mnist(tmp_path, batch_size=90).setup("validate")  # evaluating needs no training batch
    with pytest.raises(ConfigError, match=r"val_split=0.99999 leaves 0 of .* fewer than one batch of 32"):
        mnist(tmp_path, val_split=0.99999).setup("fit")
    with pytest.raises(ConfigError, match=r"val_split=1e-17 leaves 100 of .* and none for validation\. Fix:"):
        mnist(tmp_path, val_split=1e-17).setup("fit")  # 100 * (1 - 1e-17) rounds to 100


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file")
    dm = FashionMNISTDataModule(data_dir=tmp_path / "data")  # would otherwise fall back to a system-wide copy
    for step in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(ConfigError, match=r"data_dir='.*/data' is a file, not a folder\. Fix:"):
            step()
