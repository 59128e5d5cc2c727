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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from fashion_lab.checkpoints import range_of_old_checkpoint, unknown_input_range
from fashion_lab.errors import ClassCountError, check
from fashion_lab.input_range import InputScaleWarning, far_outside
from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.losses import Loss, LossName
from fashion_lab.keras.optim import OptimizerName, ScheduleName, check_schedule, make_optimizer, make_schedule
from fashion_lab.keras.schedules import ReduceLROnPlateau
from fashion_lab.steps_per_execution import Batch, StepsPerExecution

# DenseStack's options, which the model takes by name (num_classes is the model's own; the input is 28×28 pixels)
NETWORK_OPTIONS = {
    name: p
    for name, p in inspect.signature(DenseStack).parameters.items()
    if name not in ("num_classes", "in_features")
}


class MLPClassifier(StepsPerExecution):
    """Keras' `Sequential([Flatten, Dense(128, relu), Dropout(0.2), Dense(C, softmax)])`, compiled with a Keras loss,
    optimizer and learning-rate schedule; `forward` returns logits.

    A standard automatic-optimization LightningModule for `(x, y)` batches. When the data module hands over lists
    of K mini-batches (Keras' `steps_per_execution=K`, the CLI's default), it takes the K optimizer steps itself
    (`fashion_lab.steps_per_execution`): the same updates, with the framework's per-step cost paid once per list.
    The network's options (hidden, activation, dropout, ...) are `DenseStack`'s, documented there and passed on.

    Args:
        num_classes: classes C of the output layer: the data module's `num_classes` (the CLI links it from the data;
            a model attached to data with another number stops before its first step, naming both).
        class_names: names for figures and per-class metrics; default: the datamodule's `classes`, else "0".."C-1".
        loss: the Keras loss, by name (see `fashion_lab.keras.losses`); the seed's is sparse cross-entropy.
        label_smoothing: Keras' label smoothing of the one-hot target, t = (1 - s)·onehot + s / C.
        focal_gamma: the focal loss' focusing exponent γ.
        one_hot_targets: False reproduces the seed's mse/mae pitfall (integer labels against probabilities).
        optimizer: adam, adamw, sgd or rmsprop, with Keras' update rules and defaults (`fashion_lab.keras.optim`).
        lr: learning rate (the schedules' starting value); None = Keras' default (1e-3, sgd 1e-2).
        weight_decay: Keras' decoupled weight decay, w -= w·wd·lr each update, in any optimizer; None = Keras'
            default (adamw 0.004, others none). Unlike `kernel_regularizer="l2"` it is not part of the loss.
        momentum: sgd's and rmsprop's momentum (Keras' default 0).
        nesterov: sgd with Nesterov momentum.
        clipnorm: Keras' clipnorm: clip each weight's gradient to this L2 norm.
        clipvalue: Keras' clipvalue: clip every gradient value to [-clipvalue, clipvalue].
        global_clipnorm: Keras' global_clipnorm: clip all gradients together to this L2 norm.
        gradient_accumulation_steps: Keras' option: update every N steps with the mean of N steps' gradients.
        lr_schedule: the learning rate over the run, by Keras name: constant, cosine_decay (with optional warm-up),
            exponential_decay, piecewise_constant_decay, one_cycle (torch's OneCycleLR, peak = lr) or
            reduce_on_plateau (Keras' callback, monitoring val/loss each epoch).
        decay_steps: optimizer steps of cosine/exponential decay; None = all steps of the run (after the warm-up).
        decay_rate: exponential_decay's factor per `decay_steps`.
        staircase: exponential_decay in whole steps of `decay_steps`.
        alpha: cosine_decay's final learning rate as a fraction of the peak.
        warmup_steps: cosine_decay: steps of linear warm-up from lr to `warmup_target`; one_cycle: steps of its rise.
        warmup_target: cosine_decay's peak after warm-up; None = no warm-up.
        boundaries: piecewise_constant_decay's step boundaries.
        values: piecewise_constant_decay's learning rates, one more than `boundaries` (values[0] replaces lr).
        plateau_factor: reduce_on_plateau: multiply lr by this when val/loss stops improving.
        plateau_patience: reduce_on_plateau: epochs without improvement before a reduction.
        min_lr: reduce_on_plateau: the learning rate's lower bound.
    """

    def __init__(
        self,
        num_classes: int = 10,
        class_names: list[str] | None = None,
        loss: LossName = "cross_entropy",
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        one_hot_targets: bool = True,
        optimizer: OptimizerName = "adam",
        lr: float | None = None,
        weight_decay: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        lr_schedule: ScheduleName = "constant",
        decay_steps: int | None = None,
        decay_rate: float = 0.1,
        staircase: bool = False,
        alpha: float = 0.0,
        warmup_steps: int = 0,
        warmup_target: float | None = None,
        boundaries: list[int] | None = None,
        values: list[float] | None = None,
        plateau_factor: float = 0.1,
        plateau_patience: int = 10,
        min_lr: float = 0.0,
        **network: Any,
    ) -> None:
        super().__init__()
        if unknown := sorted(set(network) - set(NETWORK_OPTIONS)):
            raise TypeError(f"MLPClassifier() got unexpected keyword arguments {unknown}")
        for name, p in NETWORK_OPTIONS.items():  # in place (jsonargparse reads `network`'s one use below)
            network.setdefault(name, p.default)  # so that the hparams, and checkpoints, hold every option
        # Hydra passes YAML lists as OmegaConf ListConfig, which torch.load(weights_only=True) refuses in a checkpoint
        class_names, boundaries, values = plain(class_names), plain(boundaries), plain(values)
        network.update({name: plain(value) for name, value in network.items()})
        self.save_hyperparameters()  # flat: the network's options beside the model's, as the CLI and YAML name them
        # by keyword: LightningCLI reads the network's options (types, defaults, help) from this call
        self.net = DenseStack(num_classes, in_features=28 * 28, **network)
        self.loss_fn = Loss(loss, label_smoothing, focal_gamma, one_hot_targets)
        check([("class_names", class_names, class_names is None or len(class_names) == num_classes,
                f"one name per class ({num_classes})")])  # fmt: skip
        check_schedule(**self._options_of(check_schedule))
        make_optimizer([torch.zeros(1, requires_grad=True)], **self._options_of(make_optimizer))  # checks them now
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
        self.register_load_state_dict_pre_hook(_no_best_yet)  # older state dicts lack it

    def _options_of(self, function: Callable) -> dict[str, Any]:
        """The hparams that `function` takes, by keyword."""
        return {name: self.hparams[name] for name in inspect.signature(function).parameters if name in self.hparams}

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
        optimizer = make_optimizer(self.parameters(), **self._options_of(make_optimizer))
        options = self._options_of(check_schedule)
        scheduler = make_schedule(optimizer, self.total_optimizer_steps, **options)
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


def _no_best_yet(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a state dict older than `val_acc_best` loads with no best accuracy yet."""
    state_dict.setdefault(prefix + "val_acc_best.max_value", torch.tensor(float("-inf")))


def _signature() -> inspect.Signature:
    """The model's own options, then the network's (keyword-only): what `inspect.signature(MLPClassifier)` shows.

    LightningCLI does not need it: jsonargparse follows `**network` into the `DenseStack(...)` call by itself.
    """
    own = list(inspect.signature(MLPClassifier.__init__).parameters.values())[1:-1]  # without self and **network
    network = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in NETWORK_OPTIONS.values()]
    return inspect.Signature([*own, *network])


MLPClassifier.__signature__ = _signature()
