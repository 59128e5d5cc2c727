"""The seed's Keras network as a LightningModule: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(C, softmax).

from fashion_lab import FashionMNISTDataModule, MLPClassifier
trainer = L.Trainer(max_epochs=5, callbacks=[TensorBoardFigures()])
trainer.fit(MLPClassifier(), FashionMNISTDataModule())   # the seed: adam, sparse cross-entropy, 101,770 parameters
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from fashion_lab.layers import (
    ACTIVATIONS,
    CONSTRAINTS,
    INITIALIZERS,
    REGULARIZERS,
    Activation,
    Constraint,
    Initializer,
    Regularizer,
    choose,
    regularization,
)
from fashion_lab.losses import Loss, LossName

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
Batch = tuple[Tensor, Tensor]

# name -> (torch class, Keras' default learning rate, extra Keras defaults that differ from torch's)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], float, dict]] = {
    "adam": (torch.optim.Adam, 1e-3, {"eps": 1e-7}),
    "adamw": (torch.optim.AdamW, 1e-3, {"eps": 1e-7}),
    "sgd": (torch.optim.SGD, 1e-2, {}),
    "rmsprop": (torch.optim.RMSprop, 1e-3, {"alpha": 0.9, "eps": 1e-7}),  # Keras rho=0.9; torch's alpha is 0.99
}


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (learning rate too high, or a bad input)."""


class MLPClassifier(L.LightningModule):
    """Keras' `Sequential([Flatten, Dense(128, relu), Dropout(0.2), Dense(C, softmax)])`; `forward` returns logits.

    Dense options (use_bias, initializers, regularizers, constraints) apply to every Dense layer as written in
    Keras for each; `activation` and the activity regularizer apply to the hidden layers (the output layer's
    softmax lives in the loss). Regularizer names take the factors `l1` / `l2` (Keras' string defaults 0.01).

    Weight decay is not the same thing as Keras' l2: `weight_decay` in adam / sgd / rmsprop is *coupled*, added to
    the gradient as wd·w, i.e. the gradient of (wd/2)·‖w‖² over every parameter, biases included, and then rescaled
    by Adam's per-parameter step sizes; adamw *decouples* it, shrinking w by lr·wd·w after the step regardless of
    the gradient. Keras' `kernel_regularizer="l2"` adds λ·Σw² (note: no ½) over kernels only, to the loss itself.

    Args:
        class_names: names for figures and per-class metrics; default: the datamodule's `classes`, else "0".."C-1".
        hidden: units of each hidden Dense layer; each is followed by `activation` and Dropout(`dropout`).
        loss: see `fashion_lab.losses`; `label_smoothing`, `focal_gamma`, `one_hot_targets` configure it.
        lr: learning rate; None = Keras' default for the optimizer (1e-3, sgd 1e-2).
        momentum, nesterov: sgd's (and rmsprop's momentum); Keras' defaults 0 and False.
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
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__()
        self._validate(num_classes, class_names, hidden, dropout, l1, l2, lr, weight_decay, momentum, nesterov)
        if momentum and optimizer in ("adam", "adamw"):  # Adam's momentum is its betas; never ignore an option silently
            raise ValueError(
                f"momentum={momentum!r} has no effect with optimizer={optimizer!r}; allowed with: 'sgd', 'rmsprop'."
            )
        regularizers = {"kernel_regularizer": kernel_regularizer, "bias_regularizer": bias_regularizer}
        for argument, value in {**regularizers, "activity_regularizer": activity_regularizer}.items():
            if value is not None:
                choose(REGULARIZERS, value, argument)
        self.save_hyperparameters()
        self.optimizer_class, default_lr, self.optimizer_defaults = choose(OPTIMIZERS, optimizer, "optimizer")
        self.lr = default_lr if lr is None else lr
        self.loss_fn = Loss(loss, label_smoothing, focal_gamma, one_hot_targets)
        self.net = self._build(num_classes, hidden, activation, dropout, use_bias)
        self._initialize(choose(INITIALIZERS, kernel_initializer, "kernel_initializer"), "weight")
        self._initialize(choose(INITIALIZERS, bias_initializer, "bias_initializer"), "bias")
        constraints = (("weight", kernel_constraint, "kernel_constraint"), ("bias", bias_constraint, "bias_constraint"))
        self.constraints = [(kind, choose(CONSTRAINTS, c, arg)) for kind, c, arg in constraints if c is not None]
        regularizers = (kernel_regularizer, bias_regularizer, activity_regularizer)
        self.regularized = any(r is not None for r in regularizers)
        if activity_regularizer is not None and not hidden:
            raise ValueError(
                f"activity_regularizer={activity_regularizer!r} needs a hidden layer; hidden=() has none. "
                "Fix: add hidden units, or drop the activity regularizer."
            )
        self._class_names = class_names
        self.automatic_optimization = False  # several optimizer steps per Lightning step (steps_per_execution)
        self.example_input_array = torch.zeros(1, 1, 28, 28)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")  # micro = Keras' "accuracy"
        self.val_metrics = self._stage_metrics(num_classes, per_class=False)
        self.test_metrics = self._stage_metrics(num_classes, per_class=True)

    @staticmethod
    def _validate(
        num_classes: int,
        class_names: list[str] | None,
        hidden: tuple[int, ...],
        dropout: float,
        l1: float,
        l2: float,
        lr: float | None,
        weight_decay: float,
        momentum: float,
        nesterov: bool,
    ) -> None:
        checks = [
            ("num_classes", num_classes, isinstance(num_classes, int) and num_classes >= 2, "an integer >= 2"),
            ("hidden", hidden, all(isinstance(h, int) and h > 0 for h in hidden), "positive integers"),
            ("dropout", dropout, 0.0 <= dropout < 1.0, "0 <= dropout < 1"),
            ("l1", l1, l1 >= 0, "l1 >= 0"),
            ("l2", l2, l2 >= 0, "l2 >= 0"),
            ("lr", lr, lr is None or lr > 0, "a positive number, or None for Keras' default"),
            ("weight_decay", weight_decay, weight_decay >= 0, "weight_decay >= 0"),
            ("momentum", momentum, 0.0 <= momentum < 1.0, "0 <= momentum < 1"),
            ("nesterov", nesterov, not nesterov or momentum > 0, "nesterov=True only with momentum > 0"),
        ]
        if class_names is not None:
            ok = len(class_names) == num_classes
            checks.append(("class_names", class_names, ok, f"one name per class ({num_classes})"))
        for argument, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{argument}={value!r} is out of range; allowed: {allowed}.")

    @staticmethod
    def _build(num_classes: int, hidden: tuple[int, ...], activation: str, dropout: float, bias: bool) -> nn.Sequential:
        """Keras-named layers, so Lightning's summary (max_depth=2) reads like `model.summary()`."""
        make_activation = choose(ACTIVATIONS, activation, "activation")
        layers, width = [("flatten", nn.Flatten())], 28 * 28
        for i, units in enumerate(hidden):
            suffix = f"_{i}" if i else ""
            layers += [
                (f"dense{suffix}", nn.Linear(width, units, bias=bias)),
                (f"{activation}{suffix}", make_activation()),
            ]
            layers.append((f"dropout{suffix}", nn.Dropout(dropout)))
            width = units
        layers.append(("logits", nn.Linear(width, num_classes, bias=bias)))  # Keras' softmax is in the loss
        return nn.Sequential(OrderedDict(layers))

    def _dense_params(self, kind: str) -> list[nn.Parameter]:
        """Every Dense layer's kernel ("weight") or bias, in layer order."""
        return [getattr(m, kind) for m in self.net if isinstance(m, nn.Linear) and getattr(m, kind) is not None]

    def _initialize(self, init: Callable[[Tensor], object], kind: str) -> None:
        for p in self._dense_params(kind):
            init(p)

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
        if self._class_names is not None:
            return list(self._class_names)
        names = getattr(getattr(self._trainer, "datamodule", None), "classes", None)
        if names is not None and len(names) == self.hparams.num_classes:
            return list(names)
        return [str(i) for i in range(self.hparams.num_classes)]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) or (B, 28, 28) images → (B, C) logits."""
        return self.net(x)

    def _forward_with_activity(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits and the activity penalty: Keras' activity regularizer on each hidden activation, per sample."""
        if self.hparams.activity_regularizer is None:
            return self.net(x), None
        h, penalty = x, 0.0
        for layer in self.net:
            h = layer(h)
            if not isinstance(layer, (nn.Flatten, nn.Linear, nn.Dropout)):  # an activation's output
                # tf.keras divides the activity penalty by the batch size, so λ does not depend on it
                penalty = penalty + regularization(h, self.hparams.activity_regularizer, **self._factors) / len(h)
        return h, penalty

    @property
    def _factors(self) -> dict[str, float]:
        return {"l1": self.hparams.l1, "l2": self.hparams.l2}

    def _weight_penalty(self) -> Tensor | None:
        """Keras kernel/bias regularizers: λ1·Σ|w| + λ2·Σw² over every Dense kernel (and bias), added to the loss."""
        penalty = None
        for kind, name in (("weight", self.hparams.kernel_regularizer), ("bias", self.hparams.bias_regularizer)):
            for p in self._dense_params(kind) if name else ():
                term = regularization(p, name, **self._factors)
                penalty = term if penalty is None else penalty + term
        return penalty

    def _penalty(self, activity: Tensor | None) -> Tensor | None:
        weights = self._weight_penalty()
        if weights is None or activity is None:
            return activity if weights is None else weights
        return weights + activity

    def _losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits, the loss Keras reports (data loss + regularization penalties), and the penalties alone (or None)."""
        logits, activity = self._forward_with_activity(x)
        loss = self.loss_fn(logits, y)
        penalty = self._penalty(activity) if self.regularized else None
        return logits, loss if penalty is None else loss + penalty, penalty

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        """One optimizer step per mini-batch; a list of K mini-batches is Keras' steps_per_execution=K."""
        opt = self.optimizers()
        batches = batch if isinstance(batch[0], (list, tuple)) else [batch]
        losses, penalties, preds, targets = [], [], [], []
        for x, y in batches:  # kept as lean as a hand-written loop: no host sync, no logging in here
            logits, total, penalty = self._losses(x, y)
            self.manual_backward(total)
            opt.step()
            opt.zero_grad(set_to_none=True)
            self._apply_constraints()
            losses.append(total.detach() * len(y))
            if penalty is not None:
                penalties.append(penalty.detach() * len(y))
            preds.append(logits.detach().argmax(dim=1))
            targets.append(y)
        self._log_train(losses, penalties, torch.cat(preds), torch.cat(targets))

    @torch.no_grad()
    def _apply_constraints(self) -> None:
        # Keras applies kernel/bias constraints to the variables right after each optimizer update
        for kind, constrain in self.constraints:
            for p in self._dense_params(kind):
                constrain(p)

    def _log_train(self, losses: list[Tensor], penalties: list[Tensor], preds: Tensor, targets: Tensor) -> None:
        """One finiteness check (one host sync) and one metric update per Lightning step, however many mini-batches."""
        n = len(targets)
        loss = torch.stack(losses).sum() / n
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}. "
                "Fix: lower the learning rate (--model.lr), or check the inputs for NaN/inf."
            )
        self.train_acc.update(preds, targets)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=n, prog_bar=True)
        if penalties:  # Keras adds it to the loss silently; logged apart to see its share
            reg_loss = torch.stack(penalties).sum() / n
            self.log("train/reg_loss", reg_loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits, loss, _ = self._losses(x, y)  # as Keras' evaluate(): with the regularization penalties
        preds = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(preds, y)
        # sync_dist: under DDP the epoch's mean is reduced over every rank once, as torchmetrics does for accuracy
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
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
        metrics = getattr(self, f"{stage}_metrics")
        for name, value in metrics.compute().items():
            if value.dim():  # per-class accuracy: one scalar per class name ("/" would nest the tag)
                for class_name, v in zip(self.class_names, value, strict=True):
                    self.log(f"{stage}/class_acc/{class_name.replace('/', '_')}", v)
            else:
                self.log(f"{stage}/{name}", value, prog_bar=name == "acc")
        metrics.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to write NaN weights (a good last.ckpt stays); keep the RNG state for an exact resume."""
        if not all(torch.isfinite(p).all() for p in self.parameters()):
            raise NonFiniteLossError(
                f"the weights became NaN or infinite at epoch {self.current_epoch}, step {self.global_step}; "
                "no checkpoint was written. Fix: lower the learning rate (--model.lr), or check the inputs."
            )
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_initialized():  # dropout masks on a GPU come from CUDA's generators
            checkpoint["cuda_rng_state"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Check the checkpoint fits this model's classes, and keep its RNG state for `on_train_start`.

        Lightning restores weights, optimizer, epoch and step, but not the global torch RNG that draws the dropout
        masks: a resumed run would start from `seed_everything`'s state instead of where the saved run was, so its
        weights drift from an uninterrupted run's. The state is saved when last.ckpt is written (after the epoch's
        validation) and set again in `on_train_start`, after the sanity check, whose DataLoader draws a seed from it.
        """
        saved = checkpoint.get("hyper_parameters", {}).get("num_classes", self.hparams.num_classes)
        if saved != self.hparams.num_classes:
            raise ValueError(
                f"the checkpoint was trained for {saved} classes, but this model (linked from the data) has "
                f"{self.hparams.num_classes}. Fix: use the data module the checkpoint was trained on "
                "(its run's config.yaml), or train a new model on this data."
            )
        self._resume_rng_state = checkpoint.get("torch_rng_state")
        self._resume_cuda_rng_state = checkpoint.get("cuda_rng_state")

    def on_fit_start(self) -> None:
        if not torch.cuda.is_available():
            # Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that looking for a GPU never initialises CUDA before a
            # fork. On a CUDA build with no GPU, that check retries loading NVML on every call, and torch's Adam asks on
            # every step (~0.1 ms each: 0.75 s of the seed's 5 epochs here). Without a GPU there is nothing to protect.
            os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)

    def on_train_start(self) -> None:
        if getattr(self, "_resume_rng_state", None) is not None:
            torch.set_rng_state(self._resume_rng_state)
            self._resume_rng_state = None
        if getattr(self, "_resume_cuda_rng_state", None) is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._resume_cuda_rng_state)
            self._resume_cuda_rng_state = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        kwargs = {"lr": self.lr, "weight_decay": self.hparams.weight_decay, **self.optimizer_defaults}
        if self.hparams.optimizer == "sgd":
            kwargs.update(momentum=self.hparams.momentum, nesterov=self.hparams.nesterov)
        elif self.hparams.optimizer == "rmsprop":
            kwargs.update(momentum=self.hparams.momentum)
        # One fused kernel per step instead of a dozen small ops per tensor: ~20% off a batch-32 step on this CPU.
        # Same algorithm; torch has fused adam/adamw/sgd for cpu and cuda (not rmsprop).
        if self.hparams.optimizer != "rmsprop" and all(p.device.type in ("cpu", "cuda") for p in self.parameters()):
            kwargs["fused"] = True
        return self.optimizer_class(self.parameters(), **kwargs)
