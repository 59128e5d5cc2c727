"""LightningDataModules for Fashion-MNIST, Kuzushiji-49, MNIST and KMNIST, held in memory as uint8 tensors, and
ImageFilesDataModule: a user's own pictures, prepared to look like the data set, for `predict`.

from fashion_lab import FashionMNISTDataModule
dm = FashionMNISTDataModule(batch_size=32)   # the seed: x / 255, validation_split=0.2
dm.prepare_data(); dm.setup("fit")
x, y = next(iter(dm.train_dataloader()))     # float32 (32, 1, 28, 28) in [0, 1], int64 (32,)
"""

from __future__ import annotations

import glob
import math
import sys
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision import datasets

from fashion_lab.datasets import EpochShuffler, InMemoryImages, MiniBatches, keep_batch, mean_std
from fashion_lab.errors import ConfigError, check, choose, non_negative_integer, positive_integer
from fashion_lab.pictures import MAX_PIXELS, InvertMode, PictureError, describe, prepare, read_grey
from fashion_lab.sources import DataError, candidates, download, find, read_idx, read_npz


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
    ) -> None:
        super().__init__()
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
        self.save_hyperparameters(ignore=["data_dir"])
        self.hparams["data_dir"] = str(data_dir)  # a Path would make checkpoints unloadable with weights_only=True
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.val_split, self.split, self.seed = batch_size, val_split, split, seed
        self.download, self.normalize, self.num_workers = download, normalize, num_workers
        self.steps_per_execution, self.eval_batch_size = steps_per_execution, eval_batch_size
        self.unscaled_test_images = unscaled_test_images
        self.train_set = self.val_set = self.test_set = None
        self.mean, self.std = 0.0, 1.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of the training split (after `setup("fit")`): its `batch_size` mini-batches,
        whatever `steps_per_execution` groups them into."""
        return math.ceil(len(self.train_set) / self.batch_size)

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
        collate = {} if self.steps_per_execution == 1 else {"collate_fn": MiniBatches(self.batch_size)}
        sampler = EpochShuffler(len(self.train_set), self.seed)
        batch = self.batch_size * self.steps_per_execution
        return self._loader(self.train_set, batch, sampler=sampler, generator=generator, **collate)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, self.eval_batch_size) if len(self.val_set) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def _loader(self, dataset: InMemoryImages, batch_size: int, **kwargs) -> DataLoader:
        # A standard DataLoader (so Lightning can swap in a DistributedSampler); never drop_last on val/test.
        return DataLoader(
            dataset,
            **{"batch_size": batch_size, "collate_fn": keep_batch, **kwargs},
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
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


DataSetName = Literal["FashionMNIST", "MNIST", "KMNIST", "K49"]
CLASSES = {dm.name: dm.classes for dm in (FashionMNISTDataModule, MNISTDataModule, KMNISTDataModule, K49DataModule)}


class ImageFiles(InMemoryImages):
    """Pictures prepared as uint8 (N, 28, 28), the files they came from, and the inputs that could not be read."""

    def __init__(self, images: Tensor, paths: list[str], failures: list[tuple[str, str]]) -> None:
        super().__init__(images, None)
        self.paths, self.failures = paths, failures


class ImageFilesDataModule(L.LightningDataModule):
    """Your own pictures for `predict`: files, folders and globs, each made to look like a Fashion-MNIST image.

    python -m fashion_lab.cli predict --ckpt_path last.ckpt --data ImageFilesDataModule --data.paths "photos/*.jpg"

    Every picture gets the same preprocessing (`fashion_lab.pictures.prepare`): grey, inverted if its background is
    light, the background level subtracted, cropped to the object, padded to a square, resized to 28×28, 8 bits;
    then scaled as the checkpoint's training data was (x / 255, and its mean and std if it used `normalize`).
    A file that cannot be read is named on stderr with the reason and skipped; the others are still predicted.

    Args:
        paths: picture files, folders (the files directly inside; hidden files skipped) and globs ("shoes/**/*.png").
        classes: the checkpoint's class names: its data set's name (FashionMNIST, MNIST, KMNIST, K49) or a list.
        invert: "auto" inverts a picture whose border is light (a photo of a dark object on paper); always; never.
        crop: crop to the object: the pixels brighter than `threshold` after inversion and background subtraction.
        threshold: grey level in [0, 1) that separates the object from the background for `crop`.
        margin: black pixels left on each side of the 28×28 frame (Fashion-MNIST: 0, objects fill it; MNIST: 4).
        max_pixels: larger pictures are refused unread, as possible decompression bombs (default 50 megapixels).
        batch_size: pictures per predict batch.
    """

    def __init__(
        self,
        paths: str | list[str],
        classes: DataSetName | list[str] = "FashionMNIST",
        invert: InvertMode = "auto",
        crop: bool = True,
        threshold: float = 0.15,
        margin: int = 0,
        max_pixels: int = MAX_PIXELS,
        batch_size: int = 1024,
    ) -> None:
        super().__init__()
        known = classes in CLASSES if isinstance(classes, str) else len(classes) >= 2
        check(
            [
                ("classes", classes, known, f"a data set's name ({', '.join(CLASSES)}) or a list of 2 or more names"),
                ("threshold", threshold, 0.0 <= threshold < 1.0, "0 <= threshold < 1"),
                ("margin", margin, isinstance(margin, int) and 0 <= margin <= 13, "an integer 0..13"),
                positive_integer("max_pixels", max_pixels),
                positive_integer("batch_size", batch_size),
            ]
        )
        choose(dict.fromkeys(("auto", "always", "never")), invert, "invert")
        self.save_hyperparameters()
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self.classes = CLASSES[classes] if isinstance(classes, str) else tuple(classes)
        self.invert, self.crop, self.threshold, self.margin = invert, crop, threshold, margin
        self.max_pixels, self.batch_size = max_pixels, batch_size
        self.mean, self.std = 0.0, 1.0
        self.scaling_given = False  # load_state_dict was called: the checkpoint's statistics are not read
        self.predict_set: ImageFiles | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def steps(self) -> list[str]:
        """The preprocessing in words (the exported model's JSON lists them)."""
        return describe(self.invert, self.crop, self.threshold, self.margin, self.max_pixels)

    def setup(self, stage: str) -> None:
        """Read and prepare every picture once; name each input that fails, and fail only if none can be read."""
        if stage != "predict":
            raise ConfigError(
                f"ImageFilesDataModule holds pictures without labels, for predict only (got {stage}). "
                "Fix: fit, validate and test on a data set such as FashionMNISTDataModule."
            )
        if self.predict_set is not None:
            return
        files, failures = expand(self.paths)
        images, kept = [], []
        for path in files:
            try:
                grey = read_grey(path, self.max_pixels)
            except PictureError as e:
                failures.append((str(path), str(e)))
                continue
            images.append(prepare(grey, self.invert, self.crop, self.threshold, self.margin))
            kept.append(str(path))
        if self.trainer is None or self.trainer.is_global_zero:
            for path, reason in failures:
                print(f"skipped {path}: {reason}", file=sys.stderr)
        if not images:
            raise DataError(
                f"no picture to predict: none of {', '.join(self.paths) or 'the paths'} could be read "
                "(the reasons are above). Fix: give image files, folders of them, or globs that match them."
            )
        self.predict_set = ImageFiles(torch.from_numpy(np.stack(images)), kept, failures)

    def predict_dataloader(self) -> DataLoader:
        # The checkpoint is restored after `setup`, so its training statistics are read here, when the loop starts.
        ckpt_path = getattr(self.trainer, "ckpt_path", None)
        if not self.scaling_given and ckpt_path:
            self._check_checkpoint(torch.load(ckpt_path, map_location="cpu", weights_only=True))
        self.predict_set.mean, self.predict_set.std = self.mean, self.std
        return DataLoader(self.predict_set, batch_size=self.batch_size, collate_fn=keep_batch)

    def state_dict(self) -> dict[str, float]:
        """The pixel mean and std the pictures are scaled with: `load_state_dict(train_dm.state_dict())` in a script."""
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.mean, self.std, self.scaling_given = state_dict["mean"], state_dict["std"], True

    def _check_checkpoint(self, checkpoint: dict) -> None:
        """Take the training data's statistics; refuse a checkpoint whose class names are not `classes`."""
        saved = checkpoint.get("hyper_parameters", {}).get("class_names")
        if saved is not None and tuple(saved) != self.classes:
            name = next((n for n, c in CLASSES.items() if c == tuple(saved)), None)
            fix = f"--data.classes {name}" if name else f"--data.classes with its {len(saved)} class names"
            raise ConfigError(
                f"the checkpoint was trained on the classes {_brief(saved)}, but the pictures are being named "
                f"with {_brief(self.classes)}. Fix: {fix}."
            )
        self.mean, self.std = training_scaling(checkpoint).values()


def _brief(names: tuple[str, ...] | list[str]) -> str:
    return f"({', '.join(names[:3])}, ... {len(names)} in all)"


def training_scaling(checkpoint: dict) -> dict[str, float]:
    """The pixel mean and std of the data a checkpoint was trained on: Lightning saves a data module's `state_dict`
    under its class name, so look for every ImageDataModule subclass' name."""
    names, todo = set(), [ImageDataModule]
    while todo:
        cls = todo.pop()
        names.add(cls.__qualname__)
        todo += cls.__subclasses__()
    state = next((value for key, value in checkpoint.items() if key in names), None)
    if state is not None:
        return {"mean": float(state["mean"]), "std": float(state["std"])}
    if checkpoint.get("datamodule_hyper_parameters", {}).get("normalize"):
        raise DataError(
            "the checkpoint was trained with normalize=True but does not hold the training data's mean and std "
            "(it predates them). Fix: train it again with this version, or run `test` once with it and --ckpt_path."
        )
    return {"mean": 0.0, "std": 1.0}


def expand(paths: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files that `paths` name, in order and each once: files as given, a folder's files (sorted, not hidden),
    a glob's matching files (sorted; `**` recurses); and (input, reason) for each input that names no file."""
    files, failures = {}, []
    for given in paths:
        path = Path(given).expanduser()
        if any(ch in given for ch in "*?["):
            found = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
            if not found:
                failures.append((given, "the pattern matches no file"))
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                failures.append((given, "the folder has no files"))
        else:
            found = [path] if path.exists() else []
            if not found:
                failures.append((given, "no such file or folder"))
        files.update(dict.fromkeys(found))
    return list(files), failures
