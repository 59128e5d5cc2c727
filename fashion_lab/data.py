"""LightningDataModules for Fashion-MNIST, Kuzushiji-49, MNIST and KMNIST, held in memory as uint8 tensors (a user's
own picture files, for `predict`, are `fashion_lab.picture_files`).

from fashion_lab import FashionMNISTDataModule
dm = FashionMNISTDataModule(batch_size=32)   # the seed: x / 255, validation_split=0.2
dm.prepare_data(); dm.setup("fit")
x, y = next(iter(dm.train_dataloader()))     # float32 (32, 1, 28, 28) in [0, 1], int64 (32,)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision import datasets

from fashion_lab.datasets import EpochShuffler, InMemoryImages, MiniBatches, keep_batch, mean_std
from fashion_lab.errors import ConfigError, DataError, check, choose, non_negative_integer, positive_integer
from fashion_lab.sources import candidates, download, find, read_idx, read_npz


class ImageDataModule(L.LightningDataModule):
    """One base for 28×28 grey-scale classification sets; a subclass only sets the class attributes below.

    Args:
        data_dir: where to look for the files first, and where downloads go (torchvision's `<data_dir>/<name>/raw/`).
        batch_size: samples per batch (Keras' default 32).
        val_split: fraction of the training file held out for validation, as Keras' `validation_split`; 0 = none.
        split: "keras" holds out the LAST `val_split` of the file, exactly as Keras does; "random" a seeded draw.
        seed: seeds the "random" split and the training shuffle (each epoch's order is `seed + epoch`).
        download: fetch missing files from the official mirrors (md5-checked).
        normalize: standardise pixels with the training split's mean and std; off, like the seed's `x / 255`.
        num_workers: DataLoader worker processes; 0 is fastest here because a batch is one tensor index.
        steps_per_execution: as in Keras' `compile(steps_per_execution=...)`: each training batch is a list of this
            many `batch_size` mini-batches (same order, same optimizer updates), so the framework's per-step cost is
            paid once per list; 1 gives plain `(x, y)` batches.
        eval_batch_size: samples per validation, test and predict batch (Keras' `validation_batch_size`); the
            metrics do not depend on it, and large batches pay the framework's per-batch cost less often.
        unscaled_test_images: test and predict on the raw 0..255 pixels instead of x / 255 (and `normalize`), as the
            tutorial's `evaluate(x_test)` did by mistake (configs/tutorial_as_printed.yaml); training and validation
            stay scaled. Off by default: never use it except to reproduce that slip.
        shuffle: shuffle the training split each epoch (as Bolts' VisionDataModule); validation and test never are.
        drop_last: drop the last training mini-batch of an epoch when it is smaller than `batch_size` (never on
            validation or test).
        pin_memory: the DataLoaders' `pin_memory` (page-locked batches, for faster copies to a GPU).
        persistent_workers: keep the `num_workers` worker processes between epochs (with num_workers > 0).
        train_val_test_split: lightning-hydra-template's MNISTDataModule option, refused with its equivalent here:
            the official test file is kept whole, and `val_split` holds out a fraction of the training file.
    """

    name: ClassVar[str]  # folder under data_dir, as in torchvision: <data_dir>/<name>/raw/
    classes: ClassVar[tuple[str, ...]]
    mirrors: ClassVar[tuple[str, ...]]
    # (file name as published, md5 of that file): train images, train labels, test images, test labels
    resources: ClassVar[tuple[tuple[str, str], ...]]
    local_copies: ClassVar[tuple[str, ...]] = ()  # other places a copy is often installed, searched after data_dir
    offline: ClassVar[str] = ""  # how to get the files without the mirrors, for the download error's fix

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 32,
        val_split: float = 0.2,
        split: Literal["keras", "random"] = "keras",
        seed: int = 42,
        download: bool = True,
        normalize: bool = False,
        num_workers: int = 0,
        steps_per_execution: int = 1,
        eval_batch_size: int = 1024,
        unscaled_test_images: bool = False,
        shuffle: bool = True,
        drop_last: bool = False,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        train_val_test_split: list[int] | None = None,
    ) -> None:
        super().__init__()
        if train_val_test_split is not None:
            raise ConfigError(split_equivalent(train_val_test_split))
        check(
            [
                positive_integer("batch_size", batch_size),
                ("val_split", val_split, 0.0 <= val_split < 1.0, "a fraction, 0 <= val_split < 1 (0: none)"),
                non_negative_integer("num_workers", num_workers),
                positive_integer("steps_per_execution", steps_per_execution),
                positive_integer("eval_batch_size", eval_batch_size),
            ]
        )
        choose(dict.fromkeys(("keras", "random")), split, "split")
        self.save_hyperparameters(ignore=["data_dir", "train_val_test_split"])
        self.hparams["data_dir"] = str(data_dir)  # a Path would make checkpoints unloadable with weights_only=True
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.val_split, self.split, self.seed = batch_size, val_split, split, seed
        self.download, self.normalize, self.num_workers = download, normalize, num_workers
        self.steps_per_execution, self.eval_batch_size = steps_per_execution, eval_batch_size
        self.unscaled_test_images = unscaled_test_images
        self.shuffle, self.drop_last = shuffle, drop_last
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.train_set = self.val_set = self.test_set = None
        self.mean, self.std = 0.0, 1.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of the training split (after `setup("fit")`): its `batch_size` mini-batches,
        whatever `steps_per_execution` groups them into."""
        n = len(self.train_set)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def search_dirs(self) -> list[Path]:
        """Folders searched for each file, in order: data_dir, torchvision's layout in it, known local copies."""
        return [self.data_dir, self.data_dir / self.name / "raw", *map(Path, self.local_copies)]

    def prepare_data(self) -> None:
        """Make sure every file exists locally: found in `search_dirs`, or downloaded (md5-checked)."""
        self._check_data_dir()
        for file_name, md5 in self.resources:
            if find(file_name, self.search_dirs) is None:
                if not self.download:
                    raise self._missing(file_name)
                dest = self.data_dir / self.name / "raw" / file_name
                download([m + file_name for m in self.mirrors], dest, md5, self.offline)

    def setup(self, stage: str) -> None:
        """Load the split(s) `stage` needs into uint8 tensors, once."""
        self._check_data_dir()
        if stage in ("fit", "validate") and self.train_set is None:
            images, labels = self._load(0)
            n_train = int(len(labels) * (1.0 - self.val_split))  # Keras: split_at = int(n * (1 - validation_split))
            self._check_split(len(labels), n_train, training=stage == "fit")
            if self.split == "random":
                order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
                images, labels = images[order], labels[order]
            if self.normalize:
                self.mean, self.std = mean_std(images[:n_train])
            self.train_set = InMemoryImages(images[:n_train], labels[:n_train], self.mean, self.std)
            self.val_set = InMemoryImages(images[n_train:], labels[n_train:], self.mean, self.std)
        if stage in ("test", "predict") and self.test_set is None:
            if self.normalize and self.train_set is None:
                self.setup("fit")  # the test set is standardised with the training split's statistics
            self.test_set = InMemoryImages(*self._load(2), self.mean, self.std, unscaled=self.unscaled_test_images)

    def state_dict(self) -> dict[str, float]:
        """The training split's pixel mean and std (0 and 1 without `normalize`): Lightning saves them in every
        checkpoint, so `test`, `predict` on picture files and the exported model scale inputs as training did."""
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.mean, self.std = state_dict["mean"], state_dict["std"]
        for dataset in (self.train_set, self.val_set, self.test_set):  # Lightning restores after `setup`
            if dataset is not None:
                dataset.mean, dataset.std = self.mean, self.std

    def _check_data_dir(self) -> None:
        # a file in its place would silently make every file "not found", or fall back to another local copy
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ConfigError(
                f"data_dir={str(self.data_dir)!r} is a file, not a folder. "
                "Fix: pass the folder that holds (or will receive) the data files."
            )

    def _check_split(self, n: int, n_train: int, training: bool) -> None:
        """Refuse a split that leaves less than one training batch, or a `val_split` > 0 with no validation image."""
        split = f"val_split={self.val_split} leaves {n_train:,} of the training file's {n:,} images to train on"
        if training and n_train < self.batch_size:
            raise ConfigError(
                f"{split}, fewer than one batch of {self.batch_size}. Fix: lower val_split or batch_size."
            )
        if self.val_split and n_train == n:
            raise ConfigError(f"{split} and none for validation. Fix: val_split 0 for no validation set, or larger.")

    def train_dataloader(self) -> DataLoader:
        # Its own generator: starting an epoch then draws no base seed from the global RNG, which draws the dropout
        # masks, so a run resumed at an epoch boundary takes the same masks as one that never stopped.
        generator = torch.Generator().manual_seed(self.seed)
        sampler = EpochShuffler(len(self.train_set), self.seed) if self.shuffle else None
        batch = self.batch_size * self.steps_per_execution
        options = {"sampler": sampler, "generator": generator, "drop_last": self.drop_last}
        if self.steps_per_execution > 1:
            # MiniBatches drops a short last mini-batch; the loader drops a last list only when it holds nothing else
            options["collate_fn"] = MiniBatches(self.batch_size, self.drop_last)
            last = self._rank_share(len(self.train_set)) % batch
            options["drop_last"] = self.drop_last and 0 < last < self.batch_size
        return self._loader(self.train_set, batch, **options)

    def _rank_share(self, n: int) -> int:
        """Samples of `n` that one process gets under DDP (Lightning's DistributedSampler pads to equal shares)."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        return math.ceil(n / world_size)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.val_set, "val") if len(self.val_set) else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set, "predict")

    def _eval_loader(self, dataset: InMemoryImages, stage: str) -> DataLoader:
        """The loader of `eval_batch_size` batches, or a refusal naming it when the Trainer's fractional
        `limit_<stage>_batches` would leave less than one of them per process (Lightning names only the limit)."""
        limit = getattr(self.trainer, f"limit_{stage}_batches", None)
        if isinstance(limit, float) and 0 < limit < 1:
            share = self._rank_share(len(dataset))
            batches = math.ceil(share / self.eval_batch_size)
            if int(limit * batches) == 0:
                largest = share // math.ceil(1 / limit)  # the batch size that gives 1 / limit batches
                smaller = f"eval_batch_size {largest} or smaller, or " if largest else ""
                raise ConfigError(
                    f"limit_{stage}_batches={limit} of the {batches} {stage} batches that each process gets with "
                    f"eval_batch_size={self.eval_batch_size} is less than one batch. Fix: {smaller}"
                    f"limit_{stage}_batches {math.ceil(1000 / batches) / 1000} or more."
                )
        return self._loader(dataset, self.eval_batch_size)

    def _loader(self, dataset: InMemoryImages, batch_size: int, **kwargs) -> DataLoader:
        # A standard DataLoader (so Lightning can swap in a DistributedSampler); never drop_last on val/test.
        return DataLoader(
            dataset,
            **{"batch_size": batch_size, "collate_fn": keep_batch, **kwargs},
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def _load(self, first: int) -> tuple[Tensor, Tensor]:
        """Read resources[first] (images) and resources[first + 1] (labels), checked, as uint8 / int64 tensors."""
        (image_file, _), (label_file, _) = self.resources[first : first + 2]
        image_path, label_path = self.path(image_file), self.path(label_file)
        if image_path.suffix == ".npz":
            images, labels = read_npz(image_path, ndim=3), read_npz(label_path, ndim=1)
        else:
            images, labels = read_idx(image_path, "images"), read_idx(label_path, "labels")
        if images.shape[1:] != (28, 28):
            raise DataError(f"{image_path} holds images of shape {images.shape[1:]}, expected 28×28.")
        if len(images) != len(labels):
            raise DataError(
                f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels. "
                "Fix: the two files must come from the same release; download them again."
            )
        if len(labels) and not 0 <= labels.min() <= labels.max() < self.num_classes:
            raise DataError(
                f"{label_path} has labels in {labels.min()}..{labels.max()}, expected 0..{self.num_classes - 1} "
                f"for {self.name}'s {self.num_classes} classes. Fix: use the data module that matches the files."
            )
        images = images if images.flags.writeable else images.copy()  # IDX arrays view the read-only file bytes
        return torch.from_numpy(images), torch.from_numpy(labels.astype("int64"))

    def path(self, file_name: str) -> Path:
        """Where `file_name` was found (data_dir, torchvision's layout, a local copy), or a DataError with the fix."""
        path = find(file_name, self.search_dirs)
        if path is None:
            raise self._missing(file_name)
        return path

    def _missing(self, file_name: str) -> DataError:
        looked = ", ".join(str(p) for p in candidates(file_name, self.search_dirs))
        return DataError(
            f"{self.name} file {file_name} not found (looked for {looked}). "
            f"Fix: run with download=True (--data.download true), or copy the files into {self.data_dir}/."
        )


class FashionMNISTDataModule(ImageDataModule):
    """Zalando's Fashion-MNIST: 60,000 train / 10,000 test, 10 clothing classes."""

    name = "FashionMNIST"
    classes = tuple(datasets.FashionMNIST.classes)
    mirrors = tuple(datasets.FashionMNIST.mirrors)
    resources = tuple(datasets.FashionMNIST.resources)
    # Debian's `dataset-fashion-mnist` package, and Keras' download cache
    local_copies = ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist")
    offline = (
        "; without internet, install Debian's copy (apt-get install dataset-fashion-mnist, or"
        " bash scripts/system-packages.sh), which is found in /usr/share/datasets/fashion-mnist/"
    )


class MNISTDataModule(ImageDataModule):
    """LeCun's hand-written digits: 60,000 train / 10,000 test."""

    name = "MNIST"
    classes = tuple(datasets.MNIST.classes)
    mirrors = tuple(datasets.MNIST.mirrors)
    resources = tuple(datasets.MNIST.resources)


class KMNISTDataModule(ImageDataModule):
    """Kuzushiji-MNIST: 10 cursive hiragana, 60,000 train / 10,000 test."""

    name = "KMNIST"
    classes = tuple(datasets.KMNIST.classes)
    mirrors = tuple(datasets.KMNIST.mirrors)
    resources = tuple(datasets.KMNIST.resources)


class K49DataModule(ImageDataModule):
    """Kuzushiji-49: 232,365 train / 38,547 test, 49 imbalanced classes (report balanced accuracy)."""

    name = "K49"
    # k49_classmap.csv: 48 hiragana in gojūon order, then the iteration mark ゝ
    classes = tuple(
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわゐゑをんゝ"
    )
    mirrors = ("http://codh.rois.ac.jp/kmnist/dataset/k49/",)
    offline = "; or fetch the four npz files on a machine with internet (http://codh.rois.ac.jp/kmnist/)"
    # Upstream publishes no checksums; these are a mirror's md5s of the current (post-2019-02-05) files.
    resources = (
        ("k49-train-imgs.npz", "7ac088b20481cf51dcd01ceaab89d821"),
        ("k49-train-labels.npz", "44a8e1b893f81e63ff38d73cad420f7a"),
        ("k49-test-imgs.npz", "d352e201d846ce6b94f42c990966f374"),
        ("k49-test-labels.npz", "4da6f7a62e67a832d5eb1bd85c5ee448"),
    )


def split_equivalent(train_val_test_split: list[int]) -> str:
    """The refusal of lightning-hydra-template's `train_val_test_split`, with the `val_split` that does its job.

    >>> split_equivalent([55_000, 5_000, 10_000]).split("Fix: ")[1]
    'remove it and set val_split: 0.08333 (5,000 of the 60,000 training images).'
    """
    train, val, *_ = [*train_val_test_split, 0, 0]
    fraction = f"{val / (train + val):.4g}" if train + val > 0 else "0.2"
    return (
        f"train_val_test_split={train_val_test_split!r} is lightning-hydra-template's MNISTDataModule option; here "
        "the official test file is kept whole and val_split holds out the last fraction of the training file, as "
        f"Keras' validation_split. Fix: remove it and set val_split: {fraction} "
        f"({val:,} of the {train + val:,} training images)."
    )


DataSetName = Literal["FashionMNIST", "MNIST", "KMNIST", "K49"]
CLASSES = {dm.name: dm.classes for dm in (FashionMNISTDataModule, MNISTDataModule, KMNISTDataModule, K49DataModule)}


def __getattr__(name: str) -> type:
    """`fashion_lab.data.ImageFilesDataModule`, the class path of configs written before it moved to picture_files."""
    if name in ("ImageFiles", "ImageFilesDataModule"):
        from fashion_lab import picture_files

        return getattr(picture_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
