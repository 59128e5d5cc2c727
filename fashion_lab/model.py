"""The seed's Keras network as a LightningModule: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(C, softmax).

import lightning as L
from fashion_lab import FashionMNISTDataModule, MLPClassifier
trainer = L.Trainer(max_epochs=5, gradient_clip_val=1.0)   # every Trainer option: plain (x, y) batches
trainer.fit(MLPClassifier(lr_schedule="cosine_decay"), FashionMNISTDataModule())
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from fashion_lab.checkpoints import no_best_accuracy_yet, range_of_old_checkpoint, unknown_input_range
from fashion_lab.errors import ClassCountError, check
from fashion_lab.input_range import InputScaleWarning, far_outside
from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.losses import Loss, LossName
from fashion_lab.keras.optim import check_optimizer, check_schedule, make_optimizer, make_schedule
from fashion_lab.keras.schedules import ReduceLROnPlateau
from fashion_lab.options import OPTIMIZER_OPTIONS, OPTIONS, SCHEDULE_OPTIONS, split_options
from fashion_lab.steps_per_execution import Batch, StepsPerExecution


class MLPClassifier(StepsPerExecution):
    """Keras' `Sequential([Flatten, Dense(128, relu), Dropout(0.2), Dense(C, softmax)])`, compiled with a Keras loss,
    optimizer and learning-rate schedule; `forward` returns logits.

    A standard automatic-optimization LightningModule for `(x, y)` batches. When the data module hands over lists
    of K mini-batches (Keras' `steps_per_execution=K`, the CLI's default), it takes the K optimizer steps itself
    (`fashion_lab.steps_per_execution`): the same updates, with the framework's per-step cost paid once per list.
    The optimizer's options (optimizer, lr, ...), the schedule's (lr_schedule, ...) and the network's (hidden,
    activation, dropout, ...) are taken by name and documented where they are declared (`fashion_lab.options`).

    Args:
        num_classes: classes C of the output layer: the data module's `num_classes` (the CLI links it from the data;
            a model attached to data with another number stops before its first step, naming both).
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
        groups = split_options(**options)
        # Hydra passes YAML lists as OmegaConf ListConfig, which torch.load(weights_only=True) refuses in a checkpoint
        class_names = plain(class_names)
        optimizer, schedule, network = ({name: plain(value) for name, value in g.items()} for g in groups)
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
        self.register_load_state_dict_pre_hook(unknown_input_range)  # older state dicts lack the two buffers
        self.learn_input_range = self.input_range_warned = False
        self.data_classes: tuple[str, ...] | None = None  # the attached datamodule's, read in `setup`
        # Training statistics are sums kept on the device, logged once per epoch, by hand because a per-step
        # `self.log` or torchmetrics update costs more than this network's whole step: Σ loss·n, Σ penalty·n,
        # Σ correct (Keras' "accuracy" is micro accuracy), Σ n.
        self.train_sums: Tensor | None = None
        self.val_loss, self.test_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
        self.val_metrics = self._stage_metrics(num_classes, per_class=False)
        self.test_metrics = self._stage_metrics(num_classes, per_class=True)
        # lightning-hydra-template's `val/acc_best`: in the state dict, so that a resumed fit remembers its best
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)
        self.register_load_state_dict_pre_hook(no_best_accuracy_yet)  # older state dicts lack it

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

    def setup(self, stage: str) -> None:
        super().setup(stage)
        data = self.trainer.datamodule
        self.data_classes = getattr(data, "classes", None)
        self._check_classes(data)

    @property
    def class_names(self) -> list[str]:
        """The names given, else the datamodule's `classes` (of the latest run), else "0".."C-1"."""
        if self.hparams.class_names is not None:
            return list(self.hparams.class_names)
        names = self.data_classes
        if names is not None and len(names) == self.hparams.num_classes:
            return list(names)
        return [str(i) for i in range(self.hparams.num_classes)]

    def _check_classes(self, data: object) -> None:
        """Before the first step: refuse a data module with another number of classes (its labels would reach past
        the output layer: an IndexError deep in the loss)."""
        theirs = getattr(data, "num_classes", None)
        if theirs is None and getattr(data, "classes", None) is not None:
            theirs = len(data.classes)
        ours = self.hparams.num_classes
        if isinstance(theirs, int) and theirs != ours:
            raise ClassCountError(
                f"the model has num_classes={ours}, but the data module {type(data).__name__} has {theirs} classes. "
                f"Fix: make the model with num_classes={theirs}: MLPClassifier(num_classes=dm.num_classes) in "
                f"Python, `num_classes: {theirs}` in the model's YAML config.",
                model=ours,
                other=theirs,
                source="data",
            )

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
            self._log_reduced("train/loss", loss / n, prog_bar=True)
            self._log_reduced("train/acc", correct / n, prog_bar=True)
            if self.net.weight_regularizers or self.net.activity_regularizer:
                self._log_reduced("train/reg_loss", reg_loss / n)
            self.train_sums = None
        self.step_epoch_schedulers()

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits, loss, _ = self._losses(x, y)  # as Keras' evaluate(): with the regularization penalties
        preds = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(preds, y)
        # one value per sample: MeanMetric ignores `weight` under nan_strategy="disable", and a mean of batch means
        # would weigh a short last batch as much as a full one
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
            self._log_reduced(f"{stage}/loss", loss.compute())
        for name, value in metrics.compute().items() if loss.update_count else ():
            if value.dim():  # per-class accuracy: one scalar per class name
                for class_name, v in zip(self.class_names, value, strict=True):
                    self._log_reduced(f"{stage}/class_acc/{tag(class_name)}", v)
            else:
                self._log_reduced(f"{stage}/{name}", value, prog_bar=name == "acc")
            if stage == "val" and name == "acc" and self._fitting():
                self.val_acc_best.update(value)
                self._log_reduced("val/acc_best", self.val_acc_best.compute())
        loss.reset()
        metrics.reset()

    def _fitting(self) -> bool:
        """In `fit`, past the sanity check: its validation of the untrained weights is no best accuracy."""
        return self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking

    def _log_reduced(self, name: str, value: Tensor, prog_bar: bool = False) -> None:
        """Log a value that every DDP rank already holds (reduced by torchmetrics or `strategy.reduce`). Syncing it
        with max returns it unchanged, and Lightning then does not recommend `sync_dist=True` for each metric."""
        self.log(name, value, prog_bar=prog_bar, sync_dist=True, reduce_fx="max")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint trained for another number of classes, with the fix; give an older checkpoint the
        input range its data module's scaling implies."""
        self.input_range_warned = False
        if "input_low" not in checkpoint.get("state_dict", {}):
            checkpoint.setdefault("state_dict", {}).update(range_of_old_checkpoint(checkpoint))
        saved = checkpoint.get("hyper_parameters", {}).get("num_classes", self.hparams.num_classes)
        if saved != self.hparams.num_classes:
            raise ClassCountError(
                f"the checkpoint was trained for {saved} classes, but this model has "
                f"num_classes={self.hparams.num_classes}. Fix: load it as MLPClassifier.load_from_checkpoint(path), "
                f"which takes num_classes={saved} from it, with data of {saved} classes; or train a new model.",
                model=self.hparams.num_classes,
                other=saved,
                source="checkpoint",
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


def plain(value: Any) -> Any:
    """A list or dict of another class (OmegaConf's, from Hydra) as a plain list or dict; anything else as it is.

    >>> from collections import UserList
    >>> plain(UserList([64, 32])), plain((128,)), plain("relu")
    ([64, 32], (128,), 'relu')
    """
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (list, tuple, str, bytes)):
        return [plain(v) for v in value]
    return value


def tag(class_name: str) -> str:
    """A class name as one part of a metric's tag: "/" would nest it in TensorBoard, spaces end up in CSV columns.

    >>> tag("Ankle boot"), tag("T-shirt/top"), tag("0 - zero"), tag("ゝ")
    ('Ankle_boot', 'T-shirt_top', '0_-_zero', 'ゝ')
    """
    return re.sub(r"[\s/]+", "_", class_name)


def _signature() -> inspect.Signature:
    """The model's own options, then the optimizer's, the schedule's and the network's (keyword-only): what
    `inspect.signature(MLPClassifier)` shows.

    LightningCLI does not need it: jsonargparse follows `**options` into the `split_options(...)` call by itself.
    """
    own = list(inspect.signature(MLPClassifier.__init__, eval_str=True).parameters.values())[1:-1]
    return inspect.Signature([*own, *OPTIONS.values()])  # without self and **options


MLPClassifier.__signature__ = _signature()
