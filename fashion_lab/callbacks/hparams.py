"""TensorBoard's HPARAMS tab: the run's hyperparameters with its results."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from fashion_lab.steps_per_execution import NoStepHooks
from fashion_lab.tensorboard import tensorboard_logger

if TYPE_CHECKING:
    from tensorboard.compat.proto.summary_pb2 import Summary

# the HPARAMS tab's metric columns, as the tab heads them, and the scalar tag whose last value each shows: the run's
# own curves, so that no scalar exists only for the tab (TensorBoard's Time Series would show each as a one-dot card)
HP_METRICS = {
    "hp/best_val_acc": "val/acc_best",
    "hp/test_acc": "test/acc",
    "hp/test_loss": "test/loss",
    "hp/test_balanced_acc": "test/balanced_acc",
    "hp/epochs": "run/epochs",
    "hp/seconds": "run/seconds",
}


class TensorBoardHParams(NoStepHooks, L.Callback):
    """TensorBoard's HPARAMS tab for the run: the model's and the data module's hyperparameters, flat, by the names
    the CLI uses (`model.dropout`, `data.batch_size`), with the run's results as metrics: best `val/acc`, the test
    accuracy, loss and balanced accuracy, the epochs run and the wall seconds from the start of `fit` to the end of its
    last epoch (a resumed fit adds the seconds before the interruption, and its best `val/acc` counts the earlier
    epochs).

    Each result column shows the last value of a scalar the run keeps anyway (HP_METRICS): the test's `test/*`,
    and three curves this callback logs at the end of every training epoch, step = epoch: `val/acc_best` (the best
    `val/acc` so far, lightning-hydra-template's name; unless the module logs it, as MLPClassifier does),
    `run/epochs` and `run/seconds`. (Not again after a test: that would be a second events file, and TensorBoard
    reads a run's files in name order, where a later one can come first.) The session (the hyperparameters and the
    columns) is written once, when training starts, as Lightning's `log_hyperparams` writes it but with each column
    pointing at its tag; a fit resumed into the run it was saved from writes no second one. With another logger, or
    none, the callback does nothing.

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
            self.logger = tensorboard_logger(trainer)
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
        if trainer.is_global_zero:
            writer = self.logger.experiment._get_file_writer()  # where Lightning's log_hyperparams writes them
            for summary in hparams_session(params | self.extra):
                writer.add_summary(summary)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/acc")
        if self.logger is not None and not trainer.sanity_checking and value is not None:
            self.best_val = float(value) if math.isnan(self.best_val) else max(self.best_val, float(value))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a module that logs `val/acc_best` itself (MLPClassifier does) has written the curve this column reads
        logged = "val/acc_best" in trainer.callback_metrics or math.isnan(self.best_val)
        best = {} if logged else {"val/acc_best": self.best_val}
        self._log(trainer, {**best, "run/epochs": trainer.current_epoch + 1})

    def _log_dir(self) -> str | None:
        """The run's folder, absolute: a fit resumed from another working directory is told apart."""
        return os.path.realpath(self.logger.log_dir) if self.logger is not None else None

    def _seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        """The results so far and the wall seconds until now, at the epoch's step: with Lightning's `epoch` key, as
        `self.log` records it."""
        if self.logger is None:
            return
        record = {**metrics, "run/seconds": self._seconds(), "epoch": trainer.current_epoch}
        self.logger.log_metrics(record, step=trainer.global_step)


def hparams_session(params: dict[str, Any]) -> list[Summary]:
    """The HPARAMS plugin's experiment, session start and session end summaries for `params`, its columns named as
    HP_METRICS heads them and reading the tags it names. Values as Lightning's log_hyperparams shows them: numbers,
    strings and booleans as they are, anything else by its str() (a list `[128]`)."""
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    params = {k: v if type(v) in (bool, int, float, str) else str(v) for k, v in params.items()}
    experiment, start, end = hparams(params, {})
    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    data.experiment.metric_infos.extend(
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=column) for column, tag in HP_METRICS.items()
    )
    value.metadata.plugin_data.content = data.SerializeToString()
    return [experiment, start, end]
