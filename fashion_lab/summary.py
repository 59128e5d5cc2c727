"""Keras' `model.summary()` for the network: one row per Keras layer with its Keras name, output shape and exact
parameter count, then Total / Trainable / Non-trainable params.

print(keras_summary(MLPClassifier()))                  # a function, for any model that holds a DenseStack
trainer = L.Trainer(callbacks=[KerasSummary()])        # the same table at the start of `fit` (the CLI's)

The layout follows Keras 3's keras/src/utils/summary_utils.py for a Sequential: 88 characters wide, columns at 45%
and 80% of the line, "Param #" right-aligned, sizes as "397.54 KB" (1 KB = 1024 bytes). Keras draws it with rich's
box characters; here it is plain text, so that a log file or a pipe reads it as a terminal does.
"""

from __future__ import annotations

import logging
import re

import lightning as L
from lightning.pytorch.callbacks import ModelSummary
from torch import nn

from fashion_lab.keras.layers import DenseStack

log = logging.getLogger("lightning.pytorch.callbacks.model_summary")  # where Lightning's own table goes
LINE, POSITIONS = 88, (0.45, 0.80, 1.0)  # Keras' defaults for a Sequential


def keras_modules(net: DenseStack) -> list[tuple[str, str, nn.Module]]:
    """(Keras name, Keras type, torch module) per Keras layer.

    Keras folds the activation into Dense(activation=...), so activation modules have no row; names are Keras'
    automatic ones (a counter per type: dense, dropout, dense_1, ...), whatever the torch module is called.
    """
    rows, counts = [], {}
    for module in net:
        kind = {nn.Flatten: "Flatten", nn.Linear: "Dense", nn.Dropout: "Dropout"}.get(type(module))
        if kind is None:
            continue
        n = counts.get(kind, 0)
        counts[kind] = n + 1
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()
        rows.append((snake + (f"_{n}" if n else ""), kind, module))
    return rows


def dense_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(Keras name, module) of each Dense layer of the DenseStack in `model`, in order; none without one."""
    net = find_net(model)
    return [(name, module) for name, kind, module in keras_modules(net) if kind == "Dense"] if net else []


def keras_layers(net: DenseStack) -> list[tuple[str, str, tuple[int | None, ...], int]]:
    """(Keras name, Keras type, output shape with None for the batch, parameters) per Keras layer."""
    rows = []
    width = next(m.in_features for m in net if isinstance(m, nn.Linear))
    for name, kind, module in keras_modules(net):
        width = module.out_features if isinstance(module, nn.Linear) else width
        rows.append((name, kind, (None, width), sum(p.numel() for p in module.parameters())))
    return rows


def readable_size(n_bytes: float) -> str:
    """Keras' readable_memory_size: "397.54 KB".

    >>> readable_size(101_770 * 4)
    '397.54 KB'
    """
    for unit in ("B", "KB", "MB"):
        if n_bytes < 1024:
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.2f} GB"


def keras_summary(model: nn.Module) -> str:
    """The Keras table of the DenseStack in `model` (the model itself, or e.g. an MLPClassifier holding one)."""
    net = find_net(model)
    if net is None:
        raise ValueError(f"{type(model).__name__} holds no DenseStack; keras_summary describes DenseStack networks")
    widths, start = [], 0
    for pos in POSITIONS:
        widths.append(int(pos * LINE) - start)
        start += widths[-1]

    def row(name: str, shape: str, params: str) -> str:
        return f" {name:<{widths[0] - 1}}{shape:<{widths[1]}}{params:>{widths[2] - 1}}"

    def size(params: list[nn.Parameter]) -> str:
        count = sum(p.numel() for p in params)
        return f"{count:,} ({readable_size(sum(p.numel() * p.element_size() for p in params))})"

    lines = ['Model: "sequential"', "_" * LINE, row("Layer (type)", "Output Shape", "Param #"), "=" * LINE]
    for i, (name, kind, shape, params) in enumerate(keras_layers(net)):
        lines += ["_" * LINE] if i else []
        lines.append(row(f"{name} ({kind})", f"({', '.join(map(str, shape))})", f"{params:,}"))
    weights = list(net.parameters())
    lines += [
        "=" * LINE,
        f" Total params: {size(weights)}",
        f" Trainable params: {size([p for p in weights if p.requires_grad])}",
        f" Non-trainable params: {size([p for p in weights if not p.requires_grad])}",
        "_" * LINE,
    ]
    return "\n".join(lines)


def find_net(model: nn.Module) -> DenseStack | None:
    """The first DenseStack in `model` (itself included)."""
    return next((m for m in model.modules() if isinstance(m, DenseStack)), None)


class KerasSummary(ModelSummary):
    """Lightning's ModelSummary callback printing Keras' `model.summary()` table at the start of `fit`.

    A ModelSummary, so the Trainer adds no default summary beside it; a model without a DenseStack gets Lightning's
    own table. The CLI uses it in place of Lightning's default, and `--trainer.enable_model_summary false` hides it.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if find_net(pl_module) is None:
            return super().on_fit_start(trainer, pl_module)
        if trainer.is_global_zero:
            log.info("%s", keras_summary(pl_module))
