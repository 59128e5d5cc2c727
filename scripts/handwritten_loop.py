"""The floor for scripts/benchmark.py: the seed's training as a minimal hand-written PyTorch loop.

    python scripts/handwritten_loop.py [--epochs 5] [--data-dir data] [--k49 DIR]

Same model (784-128-C, ReLU, dropout 0.2, Keras' glorot init), Adam(lr 1e-3, eps 1e-7), batch 32, the Keras split
(last 20% for validation, evaluated every epoch) and a test at the end. Data are whole float tensors in memory and
batches are `x[idx]` slices: no framework, no logging, no checkpoints.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def idx(path: Path) -> torch.Tensor:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    return torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).copy())


def load(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """Float images in [0, 1] and int64 labels, read with numpy only (importing fashion_lab would tax the floor)."""
    if args.k49:
        arrays = [np.load(Path(args.k49) / f"k49-{s}.npz")["arr_0"] for s in ("train-imgs", "train-labels")]
        arrays += [np.load(Path(args.k49) / f"k49-{s}.npz")["arr_0"] for s in ("test-imgs", "test-labels")]
        tensors, num_classes = [torch.from_numpy(a) for a in arrays], 49
    else:
        folder = next(Path(d) for d in (args.data_dir, "/usr/share/datasets/fashion-mnist") if Path(d).is_dir())
        names = (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
        tensors, num_classes = [idx(folder / f"{n}.gz") for n in names], 10
    train_x, train_y, test_x, test_y = tensors
    to_float = lambda t: t.reshape(-1, 1, 28, 28).float().div(255)  # noqa: E731
    return to_float(train_x), train_y.long(), to_float(test_x), test_y.long(), num_classes


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(
            (model(xb).argmax(1) == yb).sum().item() for xb, yb in zip(x.split(1024), y.split(1024), strict=True)
        )
    model.train()
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--k49", help="folder with K49 npz files (instead of Fashion-MNIST)")
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(42)
    x, y, test_x, test_y, num_classes = load(args)
    n_train = int(len(y) * 0.8)  # Keras validation_split=0.2: the last 20% of the file
    (x, val_x), (y, val_y) = x.split([n_train, len(y) - n_train]), y.split([n_train, len(y) - n_train])

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, num_classes))
    for layer in (model[1], model[4]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        for idx in torch.randperm(n_train).split(32):
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} - val acc {accuracy(model, val_x, val_y):.4f}")
    print(f"test acc {accuracy(model, test_x, test_y):.4f} ({time.perf_counter() - start:.1f} s after imports)")


if __name__ == "__main__":
    main()
