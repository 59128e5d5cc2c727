"""lightning-hydra-template's metric conventions: `val/acc_best` (the best `val/acc` so far) each epoch, in
callback_metrics and the logs; per-class tags without spaces (they become CSV columns); `val/acc`, `val/loss`,
`test/acc` as they were."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from fashion_lab import FashionMNISTDataModule, MLPClassifier
from tests.helpers.trainer import make_trainer


def rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(Path(logger.log_dir) / "metrics.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_val_acc_best_is_the_running_maximum(fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path) -> None:
    L.seed_everything(0)
    logger = CSVLogger(tmp_path)
    # a learning rate that overshoots now and then, so that val/acc falls in some epoch and the best stays
    model = MLPClassifier(lr=0.05)
    trainer = make_trainer(tmp_path, max_epochs=6, logger=logger)
    trainer.fit(model, fashion(batch_size=16))
    epochs = [r for r in rows(logger) if r.get("val/acc")]
    accs, bests = [float(r["val/acc"]) for r in epochs], [float(r["val/acc_best"]) for r in epochs]
    assert len(epochs) == 6
    assert bests == [max(accs[: i + 1]) for i in range(6)]
    assert any(a < b for a, b in zip(accs, bests, strict=True)), accs  # the best is not just the last value
    assert trainer.callback_metrics["val/acc_best"].item() == max(accs)
    # a resumed fit remembers it (the state dict holds it); a state dict from before it loads with none yet
    fresh = MLPClassifier(lr=0.05)
    fresh.load_state_dict(model.state_dict())
    assert fresh.val_acc_best.max_value.item() == max(accs)
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("val_acc_best")}
    fresh.load_state_dict(old)
    assert fresh.val_acc_best.max_value.item() == float("-inf")


def test_validate_alone_and_the_sanity_check_log_no_best(
    fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path
) -> None:
    model = MLPClassifier()
    trainer = make_trainer(tmp_path)
    trainer.validate(model, fashion())
    assert "val/acc" in trainer.callback_metrics and "val/acc_best" not in trainer.callback_metrics
    assert model.val_acc_best.max_value.item() == float("-inf")


def test_per_class_tags_have_no_spaces(fashion: Callable[..., FashionMNISTDataModule], tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    trainer = make_trainer(tmp_path, logger=logger, limit_train_batches=2)
    model = MLPClassifier()
    trainer.fit(model, fashion())
    trainer.test(model, fashion(), verbose=False)
    columns = set(rows(logger)[0])
    assert {"test/class_acc/Ankle_boot", "test/class_acc/T-shirt_top", "test/acc", "val/acc", "val/loss"} <= columns
    assert not [c for c in columns if " " in c]
    assert isinstance(trainer.callback_metrics["test/acc"], torch.Tensor)
