"""The seed's Keras network as a LightningModule: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(C, softmax).

import lightning as L
from fashion_lab import FashionMNISTDataModule, MLPClassifier
trainer = L.Trainer(max_epochs=5, gradient_clip_val=1.0)   # every Trainer option: plain (x, y) batches
trainer.fit(MLPClassifier(lr_schedule="cosine_decay"), FashionMNISTDataModule())
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from fashion_lab.errors import ConfigError, check
from fashion_lab.layers import Activation, Constraint, DenseStack, Initializer, Regularizer, choose
from fashion_lab.losses import Loss, LossName
from fashion_lab.optim import (
    OPTIMIZERS,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstantDecay,
    ReduceLROnPlateau,
)

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
ScheduleName = Literal[
    "constant", "cosine_decay", "exponential_decay", "piecewise_constant_decay", "one_cycle", "reduce_on_plateau"
]
Batch = tuple[Tensor, Tensor]
PLATEAU_MONITOR = "val/loss"  # Keras' ReduceLROnPlateau default monitor, val_loss


class MLPClassifier(L.LightningModule):
    """Keras' `Sequential([Flatten, Dense(128, relu), Dropout(0.2), Dense(C, softmax)])`, compiled with a Keras loss,
    optimizer and learning-rate schedule; `forward` returns logits.

    A standard automatic-optimization LightningModule for `(x, y)` batches. When the data module hands over lists
    of K mini-batches (Keras' `steps_per_execution=K`, the CLI's default), it takes the K optimizer steps itself:
    the same updates, with the framework's per-step cost paid once per list.

    Args:
        num_classes: classes C of the output layer (the CLI links it from the data).
        class_names: names for figures and per-class metrics; default: the datamodule's `classes`, else "0".."C-1".
        hidden: units of each hidden Dense layer; each is followed by `activation` and Dropout(`dropout`).
        activation: the hidden layers' activation, by Keras name.
        dropout: rate of the Dropout after each hidden layer (the seed: 0.2).
        use_bias: whether the Dense layers have biases (Keras' use_bias).
        kernel_initializer: Keras initializer of every kernel (Keras' default glorot_uniform).
        bias_initializer: Keras initializer of every bias (Keras' default zeros).
        kernel_regularizer: "l1", "l2" or "l1_l2": Keras' penalty λ1·Σ|w| + λ2·Σw² on every kernel, added to the loss.
        bias_regularizer: the same penalty on every bias.
        activity_regularizer: the same penalty on each hidden layer's output, divided by the batch size.
        l1: the regularizers' L1 factor λ1 (Keras' string default 0.01).
        l2: the regularizers' L2 factor λ2 (Keras' string default 0.01; note Keras' L2 has no ½).
        kernel_constraint: Keras constraint applied to every kernel after each update (max_norm, non_neg, ...).
        bias_constraint: the same for every bias.
        loss: the Keras loss, by name (see `fashion_lab.losses`); the seed's is sparse cross-entropy.
        label_smoothing: Keras' label smoothing of the one-hot target, t = (1 - s)·onehot + s / C.
        focal_gamma: the focal loss' focusing exponent γ.
        one_hot_targets: False reproduces the seed's mse/mae pitfall (integer labels against probabilities).
        optimizer: adam, adamw, sgd or rmsprop, with Keras' update rules and defaults (`fashion_lab.optim`).
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
        hidden: tuple[int, ...] = (128,),
        activation: Activation = "relu",
        dropout: float = 0.2,
        use_bias: bool = True,
        kernel_initializer: Initializer = "glorot_uniform",
        bias_initializer: Initializer = "zeros",
        kernel_regularizer: Regularizer | None = None,
        bias_regularizer: Regularizer | None = None,
        activity_regularizer: Regularizer | None = None,
        l1: float = 0.01,
        l2: float = 0.01,
        kernel_constraint: Constraint | None = None,
        bias_constraint: Constraint | None = None,
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = DenseStack(
            num_classes, hidden, activation, dropout, use_bias, kernel_initializer, bias_initializer,
            kernel_regularizer, bias_regularizer, activity_regularizer, l1, l2, kernel_constraint, bias_constraint,
        )  # fmt: skip
        self.loss_fn = Loss(loss, label_smoothing, focal_gamma, one_hot_targets)
        self._check_optimization(class_names)
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        # Training statistics are sums kept on the device, logged once per epoch: a `self.log` per step costs ~0.6 ms
        # in Lightning and a torchmetrics update ~0.1 ms, more than this network's whole step. Written by hand only
        # for that cost: Σ loss·n, Σ penalty·n, Σ correct (Keras' "accuracy" is micro accuracy), Σ n.
        self.train_sums: Tensor | None = None
        self.val_loss, self.test_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
        self.val_metrics = self._stage_metrics(num_classes, per_class=False)
        self.test_metrics = self._stage_metrics(num_classes, per_class=True)

    def _check_optimization(self, class_names: list[str] | None) -> None:
        hp = self.hparams
        choose(OPTIMIZERS, hp.optimizer, "optimizer")
        choose(dict.fromkeys(get_args(ScheduleName)), hp.lr_schedule, "lr_schedule")
        check(
            [
                # momentum and nesterov here too: adam/adamw take neither, so their classes cannot check them
                ("momentum", hp.momentum, 0.0 <= hp.momentum < 1.0, "0 <= momentum < 1"),
                ("nesterov", hp.nesterov, not hp.nesterov or hp.momentum > 0, "nesterov=True only with momentum > 0"),
                ("warmup_steps", hp.warmup_steps, hp.warmup_steps >= 0, "an integer >= 0"),
                ("decay_steps", hp.decay_steps, hp.decay_steps is None or hp.decay_steps > 0,
                 "a positive integer, or None for the whole run"),
                ("decay_rate", hp.decay_rate, hp.decay_rate > 0, "a positive number"),
                ("alpha", hp.alpha, 0 <= hp.alpha <= 1, "0 <= alpha <= 1"),
                ("warmup_target", hp.warmup_target, hp.warmup_target is None or hp.warmup_target > 0,
                 "a positive number, or None (no warm-up)"),
                ("plateau_factor", hp.plateau_factor, 0 < hp.plateau_factor < 1, "0 < plateau_factor < 1"),
                ("plateau_patience", hp.plateau_patience, hp.plateau_patience >= 0, "an integer >= 0"),
                ("min_lr", hp.min_lr, hp.min_lr >= 0, "min_lr >= 0"),
                ("class_names", class_names, class_names is None or len(class_names) == hp.num_classes,
                 f"one name per class ({hp.num_classes})"),
            ]
        )  # fmt: skip
        if hp.momentum and hp.optimizer in ("adam", "adamw"):  # Adam's momentum is its betas: never ignore an option
            raise ConfigError(
                f"momentum={hp.momentum!r} has no effect with optimizer={hp.optimizer!r}; "
                "allowed with: 'sgd', 'rmsprop'."
            )
        if hp.lr_schedule == "piecewise_constant_decay" and (hp.boundaries is None or hp["values"] is None):
            raise ConfigError(
                "lr_schedule='piecewise_constant_decay' needs boundaries and values, e.g. boundaries=[1500, 3000], "
                "values=[1e-3, 5e-4, 1e-4]."
            )
        # lr, weight_decay and the clipping options: checked by the optimizer class itself, now, on a stand-in weight
        OPTIMIZERS[hp.optimizer]([torch.zeros(1, requires_grad=True)], **self._optimizer_kwargs())

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

    @property
    def steps_per_execution(self) -> int:
        """Keras' steps_per_execution of the attached data module (lists of mini-batches), else 1."""
        return getattr(getattr(self._trainer, "datamodule", None), "steps_per_execution", 1)

    @property
    def automatic_optimization(self) -> bool:
        """Lightning's automatic optimization, except for steps_per_execution lists, whose steps the model takes."""
        fast = self.steps_per_execution > 1
        if fast and self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING:
            self._refuse_loop_options()
        return not fast

    def _refuse_loop_options(self) -> None:
        """Name the Keras option that does what a Trainer option cannot do inside a steps_per_execution list."""
        trainer, k = self._trainer, self.steps_per_execution
        if trainer.gradient_clip_val:
            keras = "clipvalue" if trainer.gradient_clip_algorithm == "value" else "global_clipnorm"
            option, fix = f"gradient_clip_val={trainer.gradient_clip_val}", f"{keras}={trainer.gradient_clip_val}"
        elif trainer.accumulate_grad_batches > 1:
            option = f"accumulate_grad_batches={trainer.accumulate_grad_batches}"
            fix = f"gradient_accumulation_steps={trainer.accumulate_grad_batches}"
        else:
            return
        raise ConfigError(
            f"Trainer({option}) cannot act inside the data's steps_per_execution={k} lists. Fix: use the model's "
            f"Keras option MLPClassifier({fix}) (--model.{fix.replace('=', ' ')}), or steps_per_execution=1."
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) or (B, 28, 28) images → (B, C) logits."""
        return self.net(x)

    def _losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits, the loss Keras reports (data loss + regularization penalties), and the penalties alone (or None)."""
        logits = self.net(x)
        loss, penalty = self.loss_fn(logits, y), self.net.penalty()
        return logits, loss if penalty is None else loss + penalty, penalty

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        """The loss of an `(x, y)` batch; a list of K mini-batches (steps_per_execution) takes K optimizer steps."""
        if self.automatic_optimization:
            if isinstance(batch[0], (list, tuple)):
                raise ConfigError(
                    "the training batch is a list of mini-batches, but no data module with steps_per_execution is "
                    "attached. Fix: pass the data module to fit(..., datamodule=dm), or use steps_per_execution=1."
                )
            return self._train_loss(*batch)
        opt, schedulers = self.optimizers(), self._step_schedulers()
        # Lightning checks max_steps only between lists; fast_dev_run (max_steps=1) still runs one whole list
        losses, max_steps = [], -1 if self.trainer.fast_dev_run else self.trainer.max_steps
        for x, y in batch:  # kept as lean as a hand-written loop: no host sync, no logging in here
            if 0 <= max_steps <= self.trainer.global_step:
                break
            loss = self._train_loss(x, y)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
            self.net.apply_constraints()
            for scheduler in schedulers:
                scheduler.step()
            losses.append(loss.detach())
        return torch.stack(losses).mean()  # for callbacks (e.g. the NaN guard)

    def _train_loss(self, x: Tensor, y: Tensor) -> Tensor:
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

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.net.apply_constraints()  # automatic optimization: Keras constrains right after each update

    def on_train_epoch_end(self) -> None:
        if self.train_sums is not None:
            # summed over DDP ranks (a no-op on one device), so every rank logs the whole epoch's means
            loss, reg_loss, correct, n = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
            self.log("train/loss", loss / n, prog_bar=True)
            self.log("train/acc", correct / n, prog_bar=True)
            if self.net.weight_regularizers or self.net.activity_regularizer:
                self.log("train/reg_loss", reg_loss / n)
            self.train_sums = None
        if not self.automatic_optimization:  # Lightning steps epoch schedulers only in automatic optimization
            for config in self.trainer.lr_scheduler_configs:
                if config.interval == "epoch" and isinstance(config.scheduler, ReduceLROnPlateau):
                    config.scheduler.step(self._monitored(PLATEAU_MONITOR))
                elif config.interval == "epoch":
                    config.scheduler.step()

    def _monitored(self, name: str) -> Tensor:
        value = self.trainer.callback_metrics.get(name)
        if value is None:
            raise ConfigError(
                f"lr_schedule='reduce_on_plateau' monitors {name}, which this run does not log (no validation set?). "
                "Fix: keep a validation split (--data.val_split 0.2), or choose another lr_schedule."
            )
        return value

    def _step_schedulers(self) -> list:
        return [c.scheduler for c in self.trainer.lr_scheduler_configs if c.interval == "step"]

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits, loss, _ = self._losses(x, y)  # as Keras' evaluate(): with the regularization penalties
        preds = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(preds, y)
        getattr(self, f"{stage}_loss").update(loss, len(y))
        return preds  # the TensorBoardFigures callback reads these

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
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
        """Refuse a checkpoint trained for another number of classes, with the fix."""
        saved = checkpoint.get("hyper_parameters", {}).get("num_classes", self.hparams.num_classes)
        if saved != self.hparams.num_classes:
            raise ConfigError(
                f"the checkpoint was trained for {saved} classes, but this model (linked from the data) has "
                f"{self.hparams.num_classes}. Fix: use the data module the checkpoint was trained on "
                "(its run's config.yaml; for picture files, --data.classes with its data set's name), "
                "or train a new model on this data."
            )

    def _optimizer_kwargs(self) -> dict[str, Any]:
        """The Keras optimizer's arguments from the hparams (Keras' defaults where they are None)."""
        hp = self.hparams
        kwargs = {"clipnorm": hp.clipnorm, "clipvalue": hp.clipvalue, "global_clipnorm": hp.global_clipnorm,
                  "gradient_accumulation_steps": hp.gradient_accumulation_steps}  # fmt: skip
        if hp.lr is not None or hp.lr_schedule == "piecewise_constant_decay":
            kwargs["lr"] = hp["values"][0] if hp.lr_schedule == "piecewise_constant_decay" else hp.lr
        if hp.weight_decay is not None:
            kwargs["weight_decay"] = hp.weight_decay
        if hp.optimizer == "sgd":
            kwargs.update(momentum=hp.momentum, nesterov=hp.nesterov)
        elif hp.optimizer == "rmsprop":
            kwargs["momentum"] = hp.momentum
        return kwargs

    def configure_optimizers(self) -> dict:
        optimizer = OPTIMIZERS[self.hparams.optimizer](self.parameters(), **self._optimizer_kwargs())
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return {"optimizer": optimizer}
        if isinstance(scheduler, ReduceLROnPlateau):  # the fast path steps it itself (Lightning drops `monitor` there)
            monitor = {"monitor": PLATEAU_MONITOR} if self.automatic_optimization else {}
            config = {"scheduler": scheduler, "interval": "epoch", **monitor}
        else:
            config = {"scheduler": scheduler, "interval": "step"}  # Keras schedules count optimizer steps
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _total_steps(self) -> int:
        """Optimizer steps in this fit (what a Keras schedule counts), in either path."""
        trainer, k = self.trainer, self.steps_per_execution
        lists = trainer.estimated_stepping_batches  # sets num_training_batches (lists, in the fast path)
        if k == 1:
            return int(lists)
        if trainer.max_epochs is None or trainer.max_epochs < 0:
            raise ConfigError("a schedule over the whole run needs max_epochs or max_steps; or set decay_steps.")
        mini_batches = math.ceil(len(trainer.datamodule.train_set) / trainer.datamodule.batch_size)
        per_epoch = min(mini_batches, trainer.num_training_batches * k)  # the last list of an epoch may be short
        total = per_epoch * trainer.max_epochs
        return min(total, trainer.max_steps) if trainer.max_steps >= 0 else total

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        hp, name = self.hparams, self.hparams.lr_schedule
        if name == "constant":
            return None
        if name == "reduce_on_plateau":
            return ReduceLROnPlateau(optimizer, hp.plateau_factor, hp.plateau_patience, min_lr=hp.min_lr)
        if name == "piecewise_constant_decay":
            return PiecewiseConstantDecay(optimizer, hp.boundaries, hp["values"])
        if name == "one_cycle":  # torch's; momentum left alone (Keras' optimizers have no momentum schedule)
            total = self._total_steps()
            pct = hp.warmup_steps / total if hp.warmup_steps else 0.3
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, optimizer.defaults["lr"], total_steps=total, pct_start=pct, cycle_momentum=False
            )
        decay_steps = hp.decay_steps or max(1, self._total_steps() - hp.warmup_steps)
        if name == "cosine_decay":
            return CosineDecay(optimizer, decay_steps, hp.alpha, hp.warmup_target, hp.warmup_steps)
        return ExponentialDecay(optimizer, decay_steps, hp.decay_rate, hp.staircase)
