"""TensorBoard's HPARAMS tab: the run's hyperparameters with its results."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

# the HPARAMS tab's metric columns: each a scalar tag, whose last value in the run is the one the tab shows
HP_METRICS = ("hp/best_val_acc", "hp/test_acc", "hp/test_loss", "hp/test_balanced_acc", "hp/epochs", "hp/seconds")


class TensorBoardHParams(L.Callback):
    """TensorBoard's HPARAMS tab for the run: the model's and the data module's hyperparameters, flat, by the names
    the CLI uses (`model.dropout`, `data.batch_size`), with the run's results as metrics: best `val/acc`, the test
    accuracy, loss and balanced accuracy, the epochs run and the wall seconds since `fit` started (a resumed fit
    adds the seconds before the interruption, and its best `val/acc` counts the earlier epochs).

    Lightning's documented way (Lightning-AI/pytorch-lightning #1228, #5101): `log_hyperparams(params, metrics)`
    once, with initial (NaN) values, when training starts, then the same tags logged again as the results are known
    (at the end of `fit`, and at a test after it); the tab reads the last value of each tag. A fit resumed into the
    run it was saved from writes no second session into it. Give the logger `default_hp_metric=False`, else
    Lightning writes its own `hp_metric` session into the run as well. With another logger, or none, the callback
    does nothing.

    Args:
        extra: more columns for the tab, e.g. a study's `{"trial.variant": "mse", "trial.seed": 3}`.
    """

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self.extra = dict(extra or {})
        self.logger: TensorBoardLogger | None = None
        self.start: float | None = None  # perf_counter at the start of fit; None: no fit in this process yet
        self.seconds_before = 0.0  # training seconds of the run before it was resumed here
        self.best_val = math.nan
        self.saved: dict[str, Any] | None = None  # the state of the checkpoint this fit resumes from

    @property
    def state_key(self) -> str:
        return self._generate_state_key(extra=sorted(self.extra))  # two instances with other columns: two states

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self._seconds(), "best_val_acc": self.best_val, "log_dir": self._log_dir()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = state_dict

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
            self.start, self.seconds_before, self.best_val, self.saved = time.perf_counter(), 0.0, math.nan, None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        saved, self.saved = self.saved, None  # loaded from the checkpoint after `setup`, before training starts
        if saved is not None:
            self.seconds_before, self.best_val = saved["seconds"], saved["best_val_acc"]
        if self.logger is None or (saved is not None and saved["log_dir"] == self._log_dir()):
            return  # resumed into its own run: that run's session holds these hyperparameters already
        params = {f"model.{k}": v for k, v in pl_module.hparams.items()}
        if trainer.datamodule is not None:
            params |= {f"data.{k}": v for k, v in trainer.datamodule.hparams.items()}
        # jsonargparse's `_class_path` and `_instantiator`, which LightningCLI keeps in hparams, are not options
        params = {k: v for k, v in params.items() if not k.split(".")[-1].startswith("_")}
        self.logger.log_hyperparams(params | self.extra, dict.fromkeys(HP_METRICS, math.nan))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/acc")
        if self.logger is not None and not trainer.sanity_checking and value is not None:
            self.best_val = float(value) if math.isnan(self.best_val) else max(self.best_val, float(value))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, {"hp/best_val_acc": self.best_val, "hp/epochs": trainer.current_epoch})

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        results = {f"hp/test_{k}": float(metrics[f"test/{k}"]) for k in ("acc", "loss", "balanced_acc")
                   if f"test/{k}" in metrics}  # fmt: skip
        self._log(trainer, results)

    def _log_dir(self) -> str | None:
        """The run's folder, absolute: a fit resumed from another working directory is told apart."""
        return os.path.realpath(self.logger.log_dir) if self.logger is not None else None

    def _seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        """The results so far, and the wall seconds until now (a test after fit counts in the run)."""
        if self.logger is None or self.start is None:  # a test without a fit here: the run's session is elsewhere
            return
        self.logger.log_metrics({**metrics, "hp/seconds": self._seconds()}, step=trainer.global_step)
