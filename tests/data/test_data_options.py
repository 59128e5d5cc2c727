"""The standard data module arguments (Bolts' VisionDataModule names) beside fashion_lab's own: shuffle, drop_last
(training only), pin_memory, persistent_workers; and lightning-hydra-template's train_val_test_split, refused with
its equivalent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fashion_lab import ConfigError, FashionMNISTDataModule, MLPClassifier
from tests.helpers.trainer import make_trainer

N_TRAIN = 512  # the synthetic fashion_dir: 640 training images, the last 20% for validation


def fitted(fashion: Callable[..., FashionMNISTDataModule], **kwargs) -> FashionMNISTDataModule:
    dm = fashion(**kwargs)
    dm.setup("fit")
    dm.setup("test")
    return dm


def labels(loader) -> list[torch.Tensor]:
    """The label tensor of every mini-batch, whether the loader gives (x, y) or steps_per_execution lists."""
    out = []
    for batch in loader:
        out += [y for _, y in batch] if isinstance(batch, list) else [batch[1]]
    return out


def test_defaults_keep_the_shuffled_full_epoch(fashion: Callable[..., FashionMNISTDataModule]) -> None:
    dm = fitted(fashion, batch_size=50)
    loader = dm.train_dataloader()
    assert (loader.pin_memory, loader.drop_last, loader.persistent_workers) == (False, False, False)
    sizes = [len(y) for y in labels(loader)]
    assert sizes == [50] * 10 + [12] and dm.steps_per_epoch == 11
    assert not torch.equal(torch.cat(labels(loader)), dm.train_set.labels)  # shuffled


def test_shuffle_false_keeps_the_file_order(fashion: Callable[..., FashionMNISTDataModule]) -> None:
    dm = fitted(fashion, batch_size=50, shuffle=False)
    assert torch.equal(torch.cat(labels(dm.train_dataloader())), dm.train_set.labels)


@pytest.mark.parametrize(("batch_size", "steps_per_execution"), [(50, 1), (50, 4), (60, 4), (30, 4)])
def test_drop_last_drops_the_short_training_mini_batch_only(
    fashion: Callable[..., FashionMNISTDataModule], batch_size: int, steps_per_execution: int
) -> None:
    """In plain batches and in steps_per_execution lists, whose last list may hold whole mini-batches (50 × 4: 112
    images), or only the short one (60 × 4: 32 images)."""
    dm = fitted(fashion, batch_size=batch_size, steps_per_execution=steps_per_execution, drop_last=True)
    sizes = [len(y) for y in labels(dm.train_dataloader())]
    assert sizes == [batch_size] * (N_TRAIN // batch_size) and dm.steps_per_epoch == N_TRAIN // batch_size
    # validation and test keep every image
    assert sum(len(y) for y in labels(dm.val_dataloader())) == len(dm.val_set) == 128
    assert sum(len(y) for y in labels(dm.test_dataloader())) == len(dm.test_set) == 200


def test_drop_last_under_ddp_counts_one_rank_share(fashion: Callable[..., FashionMNISTDataModule]) -> None:
    """30 × 4 = 120-image lists: one process' last list holds 32 images (one whole mini-batch and 2), each of two
    ranks' 256 holds 16 (no whole mini-batch): only there is the list itself dropped."""
    dm = fitted(fashion, batch_size=30, steps_per_execution=4, drop_last=True)
    assert dm.train_dataloader().drop_last is False
    dm.trainer = SimpleNamespace(world_size=2)
    assert dm.train_dataloader().drop_last is True


def test_fit_with_drop_last_takes_the_whole_mini_batches(
    fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path
) -> None:
    dm = fashion(batch_size=30, steps_per_execution=4, drop_last=True)
    trainer = make_trainer(tmp_path, limit_val_batches=0)
    trainer.fit(MLPClassifier(), dm)
    assert trainer.global_step == N_TRAIN // 30  # 17 optimizer steps, the 2 images left over dropped


def test_pin_memory_and_persistent_workers_reach_every_loader(fashion: Callable[..., FashionMNISTDataModule]) -> None:
    dm = fitted(fashion, pin_memory=True, num_workers=1)
    loaders = [dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()]
    assert [(dl.pin_memory, dl.persistent_workers, dl.drop_last) for dl in loaders] == [(True, True, False)] * 4
    dm = fitted(fashion, num_workers=1, persistent_workers=False)
    assert dm.train_dataloader().persistent_workers is False


def test_template_split_is_refused_with_its_val_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        FashionMNISTDataModule(data_dir=tmp_path, train_val_test_split=[55_000, 5_000, 10_000])
    assert str(e.value) == (
        "train_val_test_split=[55000, 5000, 10000] is lightning-hydra-template's MNISTDataModule option; here the "
        "official test file is kept whole and val_split holds out the last fraction of the training file, as Keras' "
        "validation_split. Fix: remove it and set val_split: 0.08333 (5,000 of the 60,000 training images)."
    )


def test_new_options_are_saved_and_old_hparams_still_build(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=tmp_path, pin_memory=True, drop_last=True)
    assert dm.hparams.pin_memory is True and dm.hparams.drop_last is True and "train_val_test_split" not in dm.hparams
    old = {"batch_size": 32, "val_split": 0.2, "split": "keras", "seed": 42, "download": True, "normalize": False}
    assert FashionMNISTDataModule(data_dir=tmp_path, **old).hparams.shuffle is True
