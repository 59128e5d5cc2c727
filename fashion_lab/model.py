"""The seed's Keras network as a LightningModule: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(C, softmax).

import lightning as L
from fashion_lab import FashionMNISTDataModule, MLPClassifier
trainer = L.Trainer(max_epochs=5, gradient_clip_val=1.0)   # every Trainer option: plain (x, y) batches
trainer.fit(MLPClassifier(lr_schedule="cosine_decay"), FashionMNISTDataModule())
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from fashion_lab.errors import ConfigError, check
from fashion_lab.fast_path import Batch, StepsPerExecution
from fashion_lab.input_range import InputScaleWarning, far_outside
from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.losses import Loss, LossName
from fashion_lab.keras.optim import check_optimizer, check_schedule, make_optimizer, make_schedule
from fashion_lab.keras.schedules import ReduceLROnPlateau
from fashion_lab.options import OPTIMIZER_OPTIONS, OPTIONS, SCHEDULE_OPTIONS, split_options
from fashion_lab.sources import DataError


class MLPClassifier(StepsPerExecution):
    """Keras' `Sequential([Flatten, Dense(128, relu), Dropout(0.2), Dense(C, softmax)])`, compiled with a Keras loss,
    optimizer and learning-rate schedule; `forward` returns logits.

    A standard automatic-optimization LightningModule for `(x, y)` batches. When the data module hands over lists
    of K mini-batches (Keras' `steps_per_execution=K`, the CLI's default), it takes the K optimizer steps itself
    (`fashion_lab.fast_path`): the same updates, with the framework's per-step cost paid once per list.
    The optimizer's options (optimizer, lr, ...), the schedule's (lr_schedule, ...) and the network's (hidden,
    activation, dropout, ...) are taken by name and documented where they are declared (`fashion_lab.options`).

    Args:
        num_classes: classes C of the output layer (the CLI links it from the data).
        class_names: names for figures and per-class metrics; default: the datamodule's `classes`, else "0".."C-1".
        loss: the Keras loss, by name (see `fashion_lab.keras.losses`); the seed's is sparse cross-entropy.
        label_smoothing: Keras' label smoothing of the one-hot target, t = (1 - s)·onehot + s / C.
        focal_gamma: the focal loss' focusing exponent γ.
        one_hot_targets: False reproduces the seed's mse/mae pitfall (integer labels against probabilities).
    """

    def __init__(
        self,
        num_classes: int = 10,
        class_names: list[str] | None = None,
        loss: LossName = "cross_entropy",
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        one_hot_targets: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        # by keyword: LightningCLI reads the options (types, defaults, help) from this one call
        optimizer, schedule, network = split_options(**options)
        # in place, so that the hparams (and checkpoints) hold every option, flat, as the CLI and YAML name them
        options.clear()
        options.update(optimizer | schedule | network)
        self.save_hyperparameters()
        self.net = DenseStack(num_classes, in_features=28 * 28, **network)
        self.loss_fn = Loss(loss, label_smoothing, focal_gamma, one_hot_targets)
        check([("class_names", class_names, class_names is None or len(class_names) == num_classes,
                f"one name per class ({num_classes})")])  # fmt: skip
        check_schedule(**schedule)
        check_optimizer(**optimizer)  # without building one: the model has no weights to optimize yet
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        # The training inputs' range, saved in the state dict, so that a test or prediction on inputs scaled
        # otherwise (the tutorial's evaluate(x_test) on 0..255) warns, also from a direct model(x). NaN = unknown.
        self.register_buffer("input_low", torch.tensor(float("nan")))
        self.register_buffer("input_high", torch.tensor(float("nan")))
        self.register_load_state_dict_pre_hook(_unknown_input_range)  # older state dicts lack the two buffers
        self.learn_input_range = self.input_range_warned = False
        # Training statistics are sums kept on the device, logged once per epoch: a `self.log` per step costs ~0.6 ms
        # in Lightning and a torchmetrics update ~0.1 ms, more than this network's whole step. Written by hand only
        # for that cost: Σ loss·n, Σ penalty·n, Σ correct (Keras' "accuracy" is micro accuracy), Σ n.
        self.train_sums: Tensor | None = None
        self.val_loss, self.test_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
        self.val_metrics = self._stage_metrics(num_classes, per_class=False)
        self.test_metrics = self._stage_metrics(num_classes, per_class=True)

    def _options(self, group: dict[str, inspect.Parameter]) -> dict[str, Any]:
        """The hparams of one group of `fashion_lab.options`, by keyword."""
        return {name: self.hparams[name] for name in group}

    @staticmethod
    def _stage_metrics(num_classes: int, per_class: bool) -> MetricCollection:
        # balanced = macro recall, the K49 authors' headline metric for its imbalanced classes
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
        }
        if per_class:
            metrics["class_acc"] = MulticlassAccuracy(num_classes, average="none")
        return MetricCollection(metrics)

    @property
    def class_names(self) -> list[str]:
        """The names given, else the attached datamodule's `classes`, else "0".."C-1"."""
        if self.hparams.class_names is not None:
            return list(self.hparams.class_names)
        names = getattr(getattr(self._trainer, "datamodule", None), "classes", None)
        if names is not None and len(names) == self.hparams.num_classes:
            return list(names)
        return [str(i) for i in range(self.hparams.num_classes)]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) or (B, 28, 28) images → (B, C) logits."""
        if not self.training:  # evaluation and prediction only: training steps call self.net
            self.check_input_range(x)
        return self.net(x)

    def on_fit_start(self) -> None:
        self.learn_input_range = True  # from the first training batch: whatever data, module or plain loader

    def on_train_batch_start(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        if self.learn_input_range:  # once per fit: one min/max, no per-step cost after the first batch
            # a steps_per_execution list of (x, y): its first x; a plain batch (x, y), a list from default_collate
            x = batch[0][0] if isinstance(batch[0], (list, tuple)) else batch[0]
            low, high = torch.aminmax(x.detach().float())
            self.input_low.copy_(low)
            self.input_high.copy_(high)
            self.learn_input_range = self.input_range_warned = False

    def check_input_range(self, x: Tensor) -> None:
        """Warn once if `x` lies far outside the training inputs' range (never while tracing or compiling)."""
        if self.input_range_warned or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if message := far_outside(x, self.input_low, self.input_high):
            warnings.warn(f"{type(self).__name__}: {message}", InputScaleWarning, stacklevel=3)
            self.input_range_warned = True

    def _losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits, the loss Keras reports (data loss + regularization penalties), and the penalties alone (or None)."""
        logits = self.net(x)
        loss, penalty = self.loss_fn(logits, y), self.net.penalty()
        return logits, loss if penalty is None else loss + penalty, penalty

    def train_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss of one training mini-batch, counted into the epoch's sums (no host sync)."""
        logits, loss, penalty = self._losses(x, y)
        with torch.no_grad():
            n = len(y)
            correct = (logits.argmax(dim=1) == y).sum()
            # Keras adds the penalty to the loss silently; its share is logged apart
            # float32 whatever the precision: a bf16 sum stops counting at 256 and is too coarse for a mean
            zero = loss.new_zeros((), dtype=torch.float32)
            reg = zero if penalty is None else penalty.float() * n
            stats = torch.stack([loss.float() * n, reg, correct.float(), zero + n])
            self.train_sums = stats if self.train_sums is None else self.train_sums.add_(stats)
        return loss

    def after_update(self) -> None:
        self.net.apply_constraints()  # Keras applies constraints right after each optimizer update

    def on_train_epoch_end(self) -> None:
        if self.train_sums is not None:
            # summed over DDP ranks (a no-op on one device), so every rank logs the whole epoch's means
            loss, reg_loss, correct, n = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
            self.log("train/loss", loss / n, prog_bar=True)
            self.log("train/acc", correct / n, prog_bar=True)
            if self.net.weight_regularizers or self.net.activity_regularizer:
                self.log("train/reg_loss", reg_loss / n)
            self.train_sums = None
        self.step_epoch_schedulers()

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits, loss, _ = self._losses(x, y)  # as Keras' evaluate(): with the regularization penalties
        preds = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(preds, y)
        # one value per sample: torchmetrics 1.9 ignores `weight` under nan_strategy="disable" (aggregation.py:106-107),
        # which made the mean a mean of batch means, off when the last batch is short (27.6188 for 27.6100)
        getattr(self, f"{stage}_loss").update(loss.detach().expand(len(y)))
        return preds  # the TensorBoardFigures callback reads these

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.check_input_range(batch[0])
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Batch | Tensor, batch_idx: int) -> Tensor:
        """Class probabilities (B, C): softmax here, since a prediction needs probabilities."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(dim=1)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        # torchmetrics reduces over DDP ranks in compute(), so every rank logs the same numbers
        loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        if loss.update_count:
            self.log(f"{stage}/loss", loss.compute())
        for name, value in metrics.compute().items() if loss.update_count else ():
            if value.dim():  # per-class accuracy: one scalar per class name ("/" would nest the tag)
                for class_name, v in zip(self.class_names, value, strict=True):
                    self.log(f"{stage}/class_acc/{class_name.replace('/', '_')}", v)
            else:
                self.log(f"{stage}/{name}", value, prog_bar=name == "acc")
        loss.reset()
        metrics.reset()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint trained for another number of classes, with the fix; give an older checkpoint the
        input range its data module's scaling implies."""
        self.input_range_warned = False
        if "input_low" not in checkpoint.get("state_dict", {}):
            checkpoint.setdefault("state_dict", {}).update(range_of_old_checkpoint(checkpoint))
        saved = checkpoint.get("hyper_parameters", {}).get("num_classes", self.hparams.num_classes)
        if saved != self.hparams.num_classes:
            raise ConfigError(
                f"the checkpoint was trained for {saved} classes, but this model (linked from the data) has "
                f"{self.hparams.num_classes}. Fix: use the data module the checkpoint was trained on "
                "(its run's config.yaml; for picture files, --data.classes with its data set's name), "
                "or train a new model on this data."
            )

    def configure_optimizers(self) -> dict:
        optimizer = make_optimizer(self.parameters(), **self._options(OPTIMIZER_OPTIONS))
        scheduler = make_schedule(optimizer, self.total_optimizer_steps, **self._options(SCHEDULE_OPTIONS))
        if scheduler is None:
            return {"optimizer": optimizer}
        if isinstance(scheduler, ReduceLROnPlateau):
            return {"optimizer": optimizer, "lr_scheduler": self.plateau_config(scheduler)}
        # Keras schedules count optimizer steps
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def range_of_old_checkpoint(checkpoint: dict) -> dict[str, Tensor]:
    """A checkpoint from before the input range was kept: the range of its data module's batches, [0, 1] scaled by
    its mean and std, if it was trained with one of the data modules (else unknown: NaN)."""
    from fashion_lab.data import training_scaling  # the data modules' checkpoint layout

    low = high = torch.tensor(float("nan"))
    if "datamodule_hyper_parameters" in checkpoint:
        try:
            mean, std = training_scaling(checkpoint).values()
            low, high = torch.tensor(-mean / std), torch.tensor((1 - mean) / std)
        except DataError:  # normalize without the statistics saved: unknown
            pass
    return {"input_low": low, "input_high": high}


def _unknown_input_range(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a state dict without the input range (older than it) loads with the range unknown."""
    for name in ("input_low", "input_high"):
        state_dict.setdefault(prefix + name, torch.tensor(float("nan")))


def _signature() -> inspect.Signature:
    """The model's own options, then the optimizer's, the schedule's and the network's (keyword-only): what
    `inspect.signature(MLPClassifier)` shows.

    LightningCLI does not need it: jsonargparse follows `**options` into the `split_options(...)` call by itself.
    """
    own = list(inspect.signature(MLPClassifier.__init__, eval_str=True).parameters.values())[1:-1]
    return inspect.Signature([*own, *OPTIONS.values()])  # without self and **options


MLPClassifier.__signature__ = _signature()
