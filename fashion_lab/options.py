"""The model's options beside its own, each declared once, by a signature with its `Args:` help: the optimizer's
(`check_optimizer`), the schedule's (`check_schedule`) and the network's (`DenseStack`).

`MLPClassifier(**options)` hands them to `split_options`, whose signature is theirs, flat and in that order; so
`inspect.signature(MLPClassifier)`, LightningCLI (jsonargparse follows `**options` into that one call and reads
names, types, defaults and help from it) and the saved hparams all see `lr`, `lr_schedule`, `hidden`, ...

>>> optimizer, schedule, network = split_options(lr=0.01, hidden=(64,))
>>> optimizer["lr"], optimizer["optimizer"], schedule["lr_schedule"], network["hidden"], network["dropout"]
(0.01, 'adam', 'constant', (64,), 0.2)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import docstring_parser  # jsonargparse's docstring reader (its `signatures` extra), so the help reads the same

from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.optim import check_optimizer, check_schedule

Options = dict[str, inspect.Parameter]


def _declared(function: Callable, skip: tuple[str, ...] = ()) -> Options:
    """`function`'s parameters as keyword-only options, their annotations evaluated (the types jsonargparse reads)."""
    parameters = inspect.signature(function, eval_str=True).parameters.values()
    return {p.name: p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters if p.name not in skip}


OPTIMIZER_OPTIONS = _declared(check_optimizer)
SCHEDULE_OPTIONS = _declared(check_schedule)
# num_classes is the model's own; the input is 28×28 pixels
NETWORK_OPTIONS = _declared(DenseStack, skip=("num_classes", "in_features"))
GROUPS = (OPTIMIZER_OPTIONS, SCHEDULE_OPTIONS, NETWORK_OPTIONS)
OPTIONS: Options = {name: p for group in GROUPS for name, p in group.items()}


def split_options(**options: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The optimizer's, the schedule's and the network's options, each with every option (defaults filled in)."""
    if unknown := sorted(set(options) - set(OPTIONS)):
        raise TypeError(f"MLPClassifier() got unexpected keyword arguments {unknown}")
    optimizer, schedule, network = ({name: options.get(name, p.default) for name, p in g.items()} for g in GROUPS)
    return optimizer, schedule, network


def _help() -> str:
    """The `Args:` section of the declarations' docstrings, for OPTIONS only."""
    docs = {}
    for function in (check_optimizer, check_schedule, DenseStack):
        docs |= {p.arg_name: p.description for p in docstring_parser.parse(function.__doc__).params}
    return "\n".join(f"    {name}: {docs[name]}".replace("\n", "\n        ") for name in OPTIONS)


split_options.__signature__ = inspect.Signature(list(OPTIONS.values()))  # type: ignore[attr-defined]
split_options.__doc__ = f"{split_options.__doc__}\n\nArgs:\n{_help()}\n"
