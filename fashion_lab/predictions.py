"""`predict` output: a CSV of predicted vs actual classes in the run's log folder, and the seed's first-20 printout."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from fashion_lab.sources import atomic_write


class CSVPredictionWriter(BasePredictionWriter):
    """Writes `predictions.csv` (index, predicted id and name, its probability, true id and name) after `predict`.

    Expects `predict_step` to return class probabilities (B, C), as `MLPClassifier.predict_step` does; the true
    label is taken from the batch when it carries one (`(x, y)`), else left empty.
    """

    def __init__(self, file_name: str = "predictions.csv", show: int = 20) -> None:
        super().__init__(write_interval="epoch")
        self.file_name, self.show = file_name, show
        self.path: Path | None = None

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: list[Tensor], batch_indices: Any
    ) -> None:
        if not predictions:
            print("Predict: no batches, nothing written.")
            return
        probs = torch.cat(predictions)
        targets = self._targets(trainer, len(probs))
        confidence, predicted = probs.max(dim=1)
        names = getattr(pl_module, "class_names", None) or [str(i) for i in range(probs.shape[1])]
        rows = [
            (i, p, names[p], f"{c:.6f}", "" if t is None else t, "" if t is None else names[t])
            for i, (p, c, t) in enumerate(zip(predicted.tolist(), confidence.tolist(), targets, strict=True))
        ]
        folder = Path(trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.file_name
        write_csv_atomic(self.path, ("index", "pred", "pred_name", "prob", "true", "true_name"), rows)
        # the seed: print("Predict:", pre[0:20]); print("Actual:", y_test[0:20])
        print(f"Predict: {predicted[: self.show].tolist()}")
        if targets and targets[0] is not None:
            print(f"Actual:  {targets[: self.show]}")
        print(f"Wrote {len(rows):,} predictions to {self.path}")

    @staticmethod
    def _targets(trainer: L.Trainer, n: int) -> list[int | None]:
        """True labels in prediction order, read from the (unshuffled) predict dataloader's dataset if it has them."""
        loaders = trainer.predict_dataloaders
        dataset = getattr(loaders[0] if isinstance(loaders, list) else loaders, "dataset", None)
        labels = getattr(dataset, "labels", None)
        return labels[:n].tolist() if labels is not None and len(labels) == n else [None] * n


def write_csv_atomic(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Write through a temporary file and rename, so an interrupted write never leaves half a CSV."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
