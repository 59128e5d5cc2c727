"""The experiments: the seed's questions as grids of variants, and the search space of the best Dense-only network.

A new question is one more entry in GRIDS (variant name → its fit options); `python -m fashion_lab.studies NAME`
runs it over seeds.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import optuna

from fashion_lab.keras.layers import Activation

# configs/tutorial_as_printed.yaml as overrides of the seed's settings (tests/studies/test_tutorial.py: they agree)
TUTORIAL_AS_PRINTED = {
    "data.batch_size": 60,
    "data.eval_batch_size": 32,
    "data.unscaled_test_images": True,
    "test_weights": "final",
}
TUTORIAL_MSE = {"model.loss": "mse", "model.one_hot_targets": False}

# Each grid maps a variant's name to its overrides of the seed's settings (fit options without the leading "--").
# The first variant is the seed's own network: every comparison in the report is made against it.
GRIDS: dict[str, dict[str, dict[str, Any]]] = {
    "loss": {
        "cross_entropy (seed)": {},
        "mse, one-hot targets": {"model.loss": "mse"},
        "mse, raw integer label (the pitfall)": {"model.loss": "mse", "model.one_hot_targets": False},
    },
    "activation": {
        "relu (seed)": {},
        **{name: {"model.activation": name} for name in get_args(Activation) if name != "relu"},
    },
    "dropout": {
        "dropout 0.2 (seed)": {},
        "dropout 0.0": {"model.dropout": 0.0},
        "dropout 0.5": {"model.dropout": 0.5},
    },
    "regularization": {
        "none (seed)": {},
        **{f"l1 {s:g}": {"model.kernel_regularizer": "l1", "model.l1": s} for s in (1e-5, 1e-4, 1e-3)},
        **{f"l2 {s:g}": {"model.kernel_regularizer": "l2", "model.l2": s} for s in (1e-5, 1e-4, 1e-3)},
        **{f"l1_l2 {s:g}": {"model.kernel_regularizer": "l1_l2", "model.l1": s, "model.l2": s} for s in (1e-5, 1e-4)},
        # Keras' decoupled decay w -= lr·wd·w (Adam(weight_decay=wd) is Keras' AdamW); 0.004 is AdamW's default
        **{f"weight decay {wd:g}": {"model.weight_decay": wd} for wd in (0.004, 0.04, 0.4)},
    },
    # The tutorial's two printed runs as its Keras calls ran them (configs/tutorial_as_printed*.yaml): batch 60 from
    # steps_per_epoch=800, and evaluate(x_test) on the unscaled images; each trial is also tested on x / 255.
    "tutorial": {
        "cross_entropy, as printed": TUTORIAL_AS_PRINTED,
        "mse on integer labels, as printed": TUTORIAL_AS_PRINTED | TUTORIAL_MSE,
    },
}


SEARCH = "search"


STUDIES = (*GRIDS, SEARCH)


# A search fit's training and validation (Lightning's max_time): with imports and the test, a fit stays within 120 s
SEARCH_MAX_TIME = "00:00:01:45"


# The search's first trial: configs/best_mlp.yaml, the network found by hand, so that TPE starts from the best known
# point instead of only from random ones.
SEARCH_START = {
    "depth": 2, "width": 512, "batch_size": 128, "optimizer": "adam", "dropout": 0.4, "activation": "relu",
    "lr": 1e-3, "lr_schedule": "constant", "weight_decay": 1e-4, "label_smoothing": 0.0, "epochs": 40,
}  # fmt: skip


BALANCED = ("K49DataModule",)  # imbalanced classes: the study's metric is balanced accuracy (macro recall)


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """The search's overrides of the seed: only sizes and training change, so it stays Flatten → Dense… → Dense(C)."""
    depth = trial.suggest_int("depth", 1, 3)
    width = trial.suggest_categorical("width", [128, 256, 512, 1024])
    batch_size = trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
    # no "adamw": with weight_decay given, Keras' Adam is AdamW (decoupled decay in every optimizer)
    optimizer = trial.suggest_categorical("optimizer", ["adam", "rmsprop", "sgd"])
    overrides = {
        "model.hidden": [max(32, width >> i) for i in range(depth)],  # a funnel, as configs/best_mlp.yaml's 512-256
        "model.dropout": round(trial.suggest_float("dropout", 0.0, 0.6, step=0.05), 2),  # 0.35, not 0.35000000000000003
        "model.activation": trial.suggest_categorical("activation", ["relu", "gelu", "swish", "elu", "selu", "tanh"]),
        "model.optimizer": optimizer,
        "model.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "model.lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "cosine_decay", "one_cycle"]),
        "model.weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        "model.label_smoothing": round(trial.suggest_float("label_smoothing", 0.0, 0.2, step=0.02), 2),
        "data.batch_size": batch_size,
        "data.steps_per_execution": max(1, 1024 // batch_size),  # Keras' option: same updates, less overhead
        "trainer.max_epochs": trial.suggest_int("epochs", 10, 60, step=5),
        "trainer.max_time": SEARCH_MAX_TIME,
    }
    if optimizer == "sgd":  # plain SGD at these learning rates barely moves in the time budget
        overrides |= {"model.momentum": 0.9, "model.nesterov": True}
    return overrides


def as_args(overrides: dict[str, Any]) -> list[str]:
    """Overrides as fit options; non-strings in JSON, which jsonargparse reads.

    >>> as_args({"model.hidden": [512, 256], "model.one_hot_targets": False, "model.loss": "mse"})
    ['--model.hidden', '[512, 256]', '--model.one_hot_targets', 'false', '--model.loss', 'mse']
    """
    return [
        arg
        for key, value in overrides.items()
        for arg in (f"--{key}", value if isinstance(value, str) else json.dumps(value))
    ]
