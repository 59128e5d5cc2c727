"""fashion_lab.options: the optimizer's, the schedule's and the network's options, declared once, are what the model,
its hparams and the CLI (names, types, defaults, help) all take; and the CLI still type-checks and range-checks them."""

from __future__ import annotations

import inspect

import docstring_parser
import pytest
import torch
from jsonargparse import ArgumentParser

from fashion_lab import MLPClassifier
from fashion_lab.cli import cli_main
from fashion_lab.keras.layers import DenseStack
from fashion_lab.keras.optim import OPTIMIZER_DEFAULTS, SCHEDULE_DEFAULTS, check_optimizer, check_schedule
from fashion_lab.options import NETWORK_OPTIONS, OPTIMIZER_OPTIONS, OPTIONS, SCHEDULE_OPTIONS, split_options

DECLARATIONS = {check_optimizer: OPTIMIZER_OPTIONS, check_schedule: SCHEDULE_OPTIONS, DenseStack: NETWORK_OPTIONS}
OWN = ["num_classes", "class_names", "loss", "label_smoothing", "focal_gamma", "one_hot_targets"]

# A value other than the default for every option, as typed on the command line, and what the model receives
GIVEN = {
    "optimizer": ("sgd", "sgd"),
    "lr": ("0.05", 0.05),
    "weight_decay": ("0.001", 0.001),
    "momentum": ("0.9", 0.9),
    "nesterov": ("true", True),
    "clipnorm": ("1.5", 1.5),
    "clipvalue": ("null", None),
    "global_clipnorm": ("null", None),
    "gradient_accumulation_steps": ("2", 2),
    "lr_schedule": ("piecewise_constant_decay", "piecewise_constant_decay"),
    "decay_steps": ("100", 100),
    "decay_rate": ("0.5", 0.5),
    "staircase": ("true", True),
    "alpha": ("0.1", 0.1),
    "warmup_steps": ("5", 5),
    "warmup_target": ("0.01", 0.01),
    "boundaries": ("[10, 20]", [10, 20]),
    "values": ("[0.1, 0.01, 0.001]", [0.1, 0.01, 0.001]),
    "plateau_factor": ("0.5", 0.5),
    "plateau_patience": ("3", 3),
    "min_lr": ("1e-05", 1e-05),
    "hidden": ("[64, 32]", (64, 32)),
    "activation": ("tanh", "tanh"),
    "dropout": ("0.1", 0.1),
    "use_bias": ("false", False),
    "kernel_initializer": ("he_normal", "he_normal"),
    "bias_initializer": ("ones", "ones"),
    "kernel_regularizer": ("l2", "l2"),
    "bias_regularizer": ("l1", "l1"),
    "activity_regularizer": ("l1_l2", "l1_l2"),
    "l1": ("0.001", 0.001),
    "l2": ("0.002", 0.002),
    "kernel_constraint": ("max_norm", "max_norm"),
    "bias_constraint": ("non_neg", "non_neg"),
}


def model_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(MLPClassifier, "model")
    return parser


def test_each_option_is_declared_once() -> None:
    """OPTIONS are exactly the declarations' parameters, and no name is in two groups or among the model's own."""
    for declaration, group in DECLARATIONS.items():
        parameters = inspect.signature(declaration, eval_str=True).parameters
        assert {n: (p.default, p.annotation) for n, p in group.items()} == {
            n: (p.default, p.annotation) for n, p in parameters.items() if n not in ("num_classes", "in_features")
        }
    names = [name for group in DECLARATIONS.values() for name in group]
    assert len(names) == len(set(names)) == len(OPTIONS)
    assert not set(names) & set(OWN)
    # make_optimizer and make_schedule fill in the same defaults
    assert {n: p.default for n, p in OPTIMIZER_OPTIONS.items()} == OPTIMIZER_DEFAULTS
    assert {n: p.default for n, p in SCHEDULE_OPTIONS.items()} == SCHEDULE_DEFAULTS


def test_signature_cli_help_and_hparams_agree_with_the_declarations() -> None:
    shown = inspect.signature(MLPClassifier).parameters
    assert list(shown) == OWN + list(OPTIONS)
    for name, p in OPTIONS.items():
        assert (shown[name].default, shown[name].annotation) == (p.default, p.annotation), name
    parser = model_parser()
    assert parser.get_defaults().model.as_dict() == {name: p.default for name, p in shown.items()}
    actions = {a.dest.removeprefix("model."): a for a in parser._actions if a.dest.startswith("model.")}
    for declaration, group in DECLARATIONS.items():
        docs = {p.arg_name: p.description for p in docstring_parser.parse(declaration.__doc__).params}
        for name in group:  # the help LightningCLI prints is the declaration's `Args:` line, word for word
            assert actions[name].help == docs[name], name
    hparams = MLPClassifier().hparams
    assert list(hparams) == list(shown)  # flat, in the signature's order, every option
    assert {n: hparams[n] for n in OPTIONS} == {n: p.default for n, p in OPTIONS.items()}


def test_the_cli_parses_every_option_into_the_model() -> None:
    assert set(GIVEN) == set(OPTIONS)  # a new option needs an example here
    args = [a for name, (text, _) in GIVEN.items() for a in (f"--model.{name}", text)]
    parser = model_parser()
    config = parser.parse_args(args)
    model = parser.instantiate(config).model
    got = {name: model.hparams[name] for name in GIVEN}
    assert got == {name: value for name, (_, value) in GIVEN.items()}
    optimizer, schedule, network = split_options(**got)
    assert (optimizer["momentum"], schedule["plateau_patience"], network["hidden"]) == (0.9, 3, (64, 32))
    # the options reach what they configure
    assert [m.out_features for m in model.net if isinstance(m, torch.nn.Linear)] == [64, 32, 10]
    assert all(m.bias is None for m in model.net if isinstance(m, torch.nn.Linear))
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.net) == 2


@pytest.mark.parametrize(
    ("option", "text"),
    [("lr", "abc"), ("lr_schedule", "cosine"), ("warmup_steps", "1.5"), ("nesterov", "maybe"), ("hidden", "[a]")],
)
def test_the_cli_refuses_a_value_of_the_wrong_type(option: str, text: str) -> None:
    with pytest.raises(Exception, match=f'Parser key "model.{option}"'):
        model_parser().parse_args([f"--model.{option}", text])


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--model.lr", "-1"], "error: lr=-1.0 is out of range; allowed: a positive number."),
        (
            ["--model.plateau_factor", "2"],
            "error: plateau_factor=2.0 is out of range; allowed: 0 < plateau_factor < 1.",
        ),
        (["--model.dropout", "1"], "error: dropout=1.0 is out of range; allowed: 0 <= dropout < 1."),
        (
            ["--model.momentum", "0.9"],
            "error: momentum=0.9 has no effect with optimizer='adam'; allowed with: 'sgd', 'rmsprop'.",
        ),
    ],
)
def test_the_cli_refuses_an_out_of_range_option_in_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FASHION_LAB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args, run=False)
    assert exit_info.value.code == 1
    assert [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")] == [line]
