"""A user's own picture files for `predict`: files, folders and globs, each made to look like a data set's image.

python -m fashion_lab.cli predict --ckpt_path last.ckpt --data ImageFilesDataModule --data.paths "photos/*.jpg"
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from fashion_lab.checkpoints import read_checkpoint, training_scaling
from fashion_lab.data import CLASSES, DataSetName
from fashion_lab.datasets import InMemoryImages, keep_batch
from fashion_lab.errors import ConfigError, DataError, check, choose, positive_integer
from fashion_lab.pictures import MAX_PIXELS, InvertMode, PictureError, describe, prepare, read_grey


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
    def preprocessing(self) -> list[str]:
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
            self._check_checkpoint(read_checkpoint(ckpt_path))
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
