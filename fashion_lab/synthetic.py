"""Small learnable stand-ins for the real files, written in exactly the official formats (tests and benchmarks).

>>> images, labels = make_images(6, num_classes=3)
>>> images.shape, images.dtype.name, labels.tolist()
((6, 28, 28), 'uint8', [0, 1, 2, 0, 1, 2])
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
K49_FILES = ("k49-train-imgs.npz", "k49-train-labels.npz", "k49-test-imgs.npz", "k49-test-labels.npz")


def make_images(n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) images: a fixed random template per class plus `seed`-dependent noise; labels cycle 0..C-1.

    Templates depend only on `num_classes`, so a train set (seed 0) and a test set (seed 1) share their classes.
    About 10% of the images show the next class's template, so accuracy tops out near 90% and a confusion matrix
    has off-diagonal cells, as with real data.
    """
    templates = np.random.default_rng(num_classes).integers(0, 2, size=(num_classes, 28, 28), dtype=np.uint8) * 200
    labels = np.arange(n) % num_classes
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 56, size=(n, 28, 28), dtype=np.uint8)
    shown = np.where(rng.random(n) < 0.1, (labels + 1) % num_classes, labels)
    return templates[shown] + noise, labels.astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: big-endian magic 0x0000 08 <ndim>, one uint32 per dimension, then the uint8 data."""
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int, n_test: int, num_classes: int = 10, gz: bool = True) -> list[Path]:
    """The four MNIST-style IDX files (gzipped by default, as published); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [*make_images(n_train, num_classes, seed=0), *make_images(n_test, num_classes, seed=1)]
    paths = []
    for name, array in zip(IDX_FILES, arrays, strict=True):
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=1) if gz else idx_bytes(array))
        paths.append(path)
    return paths


def write_k49(folder: Path, n_train: int, n_test: int, num_classes: int = 49) -> list[Path]:
    """The four K49 npz files: one array under `arr_0`, uint8 images and uint8 labels, as released."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [*make_images(n_train, num_classes, seed=0), *make_images(n_test, num_classes, seed=1)]
    paths = [folder / name for name in K49_FILES]
    for path, array in zip(paths, arrays, strict=True):
        np.savez_compressed(path, array)
    return paths
