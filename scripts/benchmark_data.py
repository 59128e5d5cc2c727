"""Time one training epoch (batch 32) of our in-memory loader against torchvision's per-item loader.

    python scripts/benchmark_data.py            # real Fashion-MNIST (Debian copy or data/), then a K49-sized set

Both loaders run in this process on the same 48,000-image Keras split; the ratio is torchvision / ours.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from fashion_lab import FashionMNISTDataModule
from fashion_lab.data import EpochShuffler, InMemoryImages, keep_batch
from fashion_lab.synthetic import make_images


def epoch_seconds(loader: DataLoader) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return time.perf_counter() - start, n


def torchvision_loader(dm: FashionMNISTDataModule, root: Path) -> DataLoader:
    """The common port: torchvision's FashionMNIST (uncompressed raw/ layout) + ToTensor + shuffled DataLoader."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in dm.resources:
        with gzip.open(dm.path(name)) as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    full = datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor())
    return DataLoader(Subset(full, range(48_000)), batch_size=32, shuffle=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--k49-size", type=int, default=232_365, help="images in the synthetic K49-sized set")
    args = parser.parse_args()
    torch.manual_seed(0)

    dm = FashionMNISTDataModule(data_dir=args.data_dir, batch_size=32)
    dm.prepare_data()
    dm.setup("fit")
    ours, n = epoch_seconds(dm.train_dataloader())
    with tempfile.TemporaryDirectory() as root:
        theirs, n_tv = epoch_seconds(torchvision_loader(dm, Path(root)))
    print(f"Fashion-MNIST train epoch, batch 32 ({n:,} images; torchvision {n_tv:,}):")
    print(f"  fashion_lab in-memory loader   {ours:7.3f} s")
    print(f"  torchvision per-item + ToTensor {theirs:7.3f} s")
    print(f"  ratio (torchvision / ours)     {theirs / ours:7.1f}x")

    images, labels = make_images(args.k49_size, num_classes=49)
    n_train = int(len(labels) * 0.8)
    k49 = InMemoryImages(torch.from_numpy(images[:n_train]), torch.from_numpy(labels[:n_train].astype("int64")))
    loader = DataLoader(k49, batch_size=32, sampler=EpochShuffler(n_train, seed=0), collate_fn=keep_batch)
    seconds, n = epoch_seconds(loader)
    mib = k49.images.nbytes / 2**20
    print(f"K49-sized synthetic train epoch, batch 32 ({n:,} images): {seconds:.3f} s")
    print(f"  held as uint8: {mib:.0f} MiB (a float32 copy would be {4 * mib:.0f} MiB)")
    print(f"  per image vs Fashion-MNIST: {seconds / n / (ours / 48_000):.2f}x")


if __name__ == "__main__":
    main()
