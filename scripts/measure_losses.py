"""The issue's "Done when" table: the seed's settings on real Fashion-MNIST with three losses, plus wall time.

python scripts/measure_losses.py                 # cross_entropy, one-hot mse, the mse pitfall (5 epochs each)
python scripts/measure_losses.py --timing-only   # 1 epoch with steps_per_execution 1 vs 32
"""

from __future__ import annotations

import sys
import time

import lightning as L

from fashion_lab import FashionMNISTDataModule, MLPClassifier

RUNS = {"cross_entropy": {"loss": "cross_entropy"}, "mse (one-hot)": {"loss": "mse"}}
RUNS["mse pitfall"] = {"loss": "mse", "one_hot_targets": False}


def run(model_kwargs: dict, epochs: int, steps_per_execution: int = 32, test: bool = True) -> tuple[float, float]:
    """Test accuracy (NaN when not tested) and the wall time of `fit` alone."""
    L.seed_everything(0)
    dm = FashionMNISTDataModule(data_dir="/tmp/fashion-empty", download=False, steps_per_execution=steps_per_execution)
    model = MLPClassifier(**model_kwargs)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, dm)
    fit_seconds = time.perf_counter() - start
    acc = trainer.test(model, dm, verbose=False)[0]["test/acc"] if test else float("nan")
    return acc, fit_seconds


def main() -> None:
    if "--timing-only" not in sys.argv:
        rows = [(name, *run(kwargs, epochs=5)) for name, kwargs in RUNS.items()]
        print("| loss | test acc | fit wall (5 epochs, K=32) |\n|---|---:|---:|")
        for name, acc, seconds in rows:
            print(f"| {name} | {acc:.4f} | {seconds:.1f} s |")
    for k in (1, 32, 1, 32):
        print(f"1-epoch fit, steps_per_execution={k}: {run({}, epochs=1, steps_per_execution=k, test=False)[1]:.2f} s")


if __name__ == "__main__":
    main()
