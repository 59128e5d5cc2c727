"""`predict` output: a CSV of the top classes per input, the TF tutorial's figure sheet, and a printed summary."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from fashion_lab.errors import DataError, check, non_negative_integer, positive_integer
from fashion_lab.pictures import NO_OBJECT, no_object
from fashion_lab.sources import atomic_write


class CSVPredictionWriter(BasePredictionWriter):
    """After `predict`: `predictions.csv` and `predictions.png` in the run's folder, and a summary on stdout.

    The CSV has one row per input: index, path (picture files; empty for a data set), the `top_k` classes (id, name,
    probability; the first as `pred`, `pred_name`, `prob`, then `pred2`...), and the true class when the data have
    labels. A picture in which preprocessing found no object gets no class: `pred_name` says "no object found" and
    the other class columns are empty. The PNG shows the first `sheet_images` inputs as the model received them,
    beside their probability bars.
    Picture files that could not be read (`ImageFilesDataModule`) were named on stderr; once the others are
    written, a DataError counts them, so the command exits non-zero.

    Expects `predict_step` to return class probabilities (B, C), as `MLPClassifier.predict_step` does.

    Args:
        file_name: the CSV's name; the figure is written beside it as `predictions.png`.
        show: inputs listed on stdout (the seed prints the first 20 predictions).
        top_k: classes per row, most probable first.
        sheet_images: inputs drawn in predictions.png (3 per row); 0 = no figure.
    """

    def __init__(self, file_name: str = "predictions.csv", show: int = 20, top_k: int = 3, sheet_images: int = 30):
        super().__init__(write_interval="epoch")
        check(
            [
                non_negative_integer("show", show),
                positive_integer("top_k", top_k),
                non_negative_integer("sheet_images", sheet_images),
            ]
        )
        self.file_name, self.show, self.top_k, self.sheet_images = file_name, show, top_k, sheet_images
        self.path: Path | None = None

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: list[Tensor], batch_indices: Any
    ) -> None:
        if not predictions:
            print("Predict: no batches, nothing written.")
            return
        probs = torch.cat(predictions).float().cpu()
        dataset = _dataset(trainer)
        targets = _targets(dataset, len(probs))
        paths = getattr(dataset, "paths", None) or [""] * len(probs)
        names = getattr(pl_module, "class_names", None) or [str(i) for i in range(probs.shape[1])]
        top_p, top_i = probs.topk(min(self.top_k, probs.shape[1]), dim=1)
        blank = _no_object(dataset, paths)
        rows = [
            (i, path, *(_nothing(len(ids)) if b else _top(ids, ps, names)), "" if t is None else t,
             "" if t is None else names[t])
            for i, (path, ids, ps, t, b) in enumerate(zip(paths, top_i.tolist(), top_p.tolist(), targets, blank,
                                                          strict=True))
        ]  # fmt: skip
        folder = Path(trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.file_name
        write_csv_atomic(self.path, header(top_p.shape[1]), rows)
        if any(paths):
            print(summary_table(paths[: self.show], top_i, top_p, names, blank[: self.show]), end="")
            if len(rows) > self.show:
                print(f"... and {len(rows) - self.show:,} more in the CSV")
        else:  # the seed: print("Predict:", pre[0:20]); print("Actual:", y_test[0:20])
            print(f"Predict: {top_i[: self.show, 0].tolist()}")
            if targets and targets[0] is not None:
                print(f"Actual:  {targets[: self.show]}")
        print(f"Wrote {len(rows):,} predictions to {self.path}")
        images = getattr(dataset, "images", None)
        if self.sheet_images and images is not None and len(images) == len(probs):
            self._write_sheet(images, probs, names, targets, paths)
        failures = getattr(dataset, "failures", None)
        if failures:
            raise DataError(
                f"{len(failures)} input(s) could not be read (each named above with the reason); "
                f"the {len(rows):,} others were predicted and written to {self.path}."
            )

    def _write_sheet(self, images: Tensor, probs: Tensor, names: list[str], targets: list, paths: list[str]) -> None:
        from fashion_lab.plots import prediction_sheet_figure

        n = min(self.sheet_images, len(probs))
        titles = [Path(p).name for p in paths[:n]] if any(paths) else None
        figure = prediction_sheet_figure(images[:n], probs[:n], names, targets[:n], titles)
        sheet = self.path.with_name("predictions.png")
        with atomic_write(sheet) as tmp:
            figure.save(tmp, format="png")
        print(f"Drew the first {n} in {sheet}")


def header(k: int) -> tuple[str, ...]:
    """index, path, pred, pred_name, prob, pred2, pred2_name, prob2, ..., true, true_name."""
    top = [(f"pred{j}", f"pred{j}_name", f"prob{j}") for j in ["", *range(2, k + 1)]]
    return ("index", "path", *(column for triple in top for column in triple), "true", "true_name")


def _top(ids: list[int], ps: list[float], names: list[str]) -> list:
    return [value for i, p in zip(ids, ps, strict=True) for value in (i, names[i], f"{p:.6f}")]


def summary_table(paths: list[str], top_i: Tensor, top_p: Tensor, names: list[str], blank: list[bool]) -> str:
    """One line per file: the file, then its top classes with their probabilities (or that it shows no object)."""
    width = min(48, max(len("file"), *map(len, paths)))
    cells = [
        [NO_OBJECT] if b else [f"{names[i]} {p:.1%}" for i, p in zip(ids, ps, strict=True)]
        for ids, ps, b in zip(top_i[: len(paths)].tolist(), top_p[: len(paths)].tolist(), blank, strict=True)
    ]
    cell = max(len(c) for row in cells for c in row) + 2
    ranks = ["prediction", "2nd", "3rd", *(f"{j}th" for j in range(4, top_i.shape[1] + 1))][: top_i.shape[1]]
    lines = [f"{'file':<{width}}  " + "".join(f"{r:<{cell}}" for r in ranks)]
    for path, row in zip(paths, cells, strict=True):
        shown = path if len(path) <= width else "…" + path[-(width - 1) :]
        lines.append(f"{shown:<{width}}  " + "".join(f"{c:<{cell}}" for c in row))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _nothing(k: int) -> list[str]:
    """The class columns of a picture with no object: no id, no class, no probability."""
    return ["", NO_OBJECT, "", *[""] * (3 * (k - 1))]


def _no_object(dataset: Any, paths: list[str]) -> list[bool]:
    """Per input: a picture file whose 28×28 came out all black (`fashion_lab.pictures.no_object`)."""
    images = getattr(dataset, "images", None)
    if not any(paths) or images is None or len(images) != len(paths):
        return [False] * len(paths)
    return [no_object(image.numpy()) for image in images]


def _dataset(trainer: L.Trainer) -> Any:
    loaders = trainer.predict_dataloaders
    return getattr(loaders[0] if isinstance(loaders, list) else loaders, "dataset", None)


def _targets(dataset: Any, n: int) -> list[int | None]:
    """True labels in prediction order, read from the (unshuffled) predict dataloader's dataset if it has them."""
    labels = getattr(dataset, "labels", None)
    return labels[:n].tolist() if labels is not None and len(labels) == n else [None] * n


def write_csv_atomic(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Write through a temporary file and rename, so an interrupted write never leaves half a CSV."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
