"""The package's user-facing errors, and its one way to check arguments: `check()` for ranges, `choose()` for names.

Each message names the argument, the bad value and what is allowed, and every command prints it as one line
(`fashion_lab.cli.user_errors.exit_on_user_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
# An argument's allowed values: a test of the value, and the words for them (`{name}` stands for the argument)
Rule = tuple[Callable[[Any], bool], str]


class ConfigError(ValueError):
    """An argument is out of range or not a known name; the message names the argument, the value and the fix."""


class ClassCountError(ConfigError):
    """The model's `num_classes` differs from its data's or its checkpoint's. The message is in a Python/YAML user's
    words; the CLI, where the data sets the model's number, words it its own way from the numbers kept here."""

    def __init__(self, message: str, model: int, other: int, source: str) -> None:
        super().__init__(message)
        self.model, self.other, self.source = model, other, source  # source: "data" or "checkpoint"


class DataError(RuntimeError):
    """A data file is missing, corrupt or inconsistent. The message names the file and the fix."""


class NonFiniteLossError(ValueError):
    """The training loss or the weights became NaN or infinite (learning rate too high, or a bad input)."""


def check(checks: Iterable[tuple[str, Any, bool, str]]) -> None:
    """Raise ConfigError for the first `(argument, value, ok, allowed)` whose `ok` is False.

    >>> check([("dropout", 1.5, 0 <= 1.5 < 1, "0 <= dropout < 1")])
    Traceback (most recent call last):
    fashion_lab.errors.ConfigError: dropout=1.5 is out of range; allowed: 0 <= dropout < 1.
    """
    for argument, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{argument}={value!r} is out of range; allowed: {allowed}.")


def check_rules(rules: Mapping[str, Rule], **values: Any) -> None:
    """`check()` each value against the rule of its name, in order; a rule is tested only while all before it pass.

    >>> check_rules({"alpha": (lambda v: 0 <= v <= 1, "0 <= {name} <= 1")}, alpha=2.0)
    Traceback (most recent call last):
    fashion_lab.errors.ConfigError: alpha=2.0 is out of range; allowed: 0 <= alpha <= 1.
    """
    check((name, v, rules[name][0](v), rules[name][1].format(name=name)) for name, v in values.items())


def choose(table: Mapping[str, T], value: str, argument: str) -> T:
    """`table[value]`, or a ConfigError naming the argument, the bad value and the allowed words.

    >>> choose({"keras": 0, "random": 1}, "stratified", "split")
    Traceback (most recent call last):
    fashion_lab.errors.ConfigError: split='stratified' is not supported; choose one of keras, random.
    """
    if value not in table:
        raise ConfigError(f"{argument}={value!r} is not supported; choose one of {', '.join(table)}.")
    return table[value]


def positive_integer(argument: str, value: Any) -> tuple[str, Any, bool, str]:
    """The `check()` entry for an argument that must be an integer > 0."""
    return argument, value, isinstance(value, int) and value > 0, "a positive integer"


def non_negative_integer(argument: str, value: Any) -> tuple[str, Any, bool, str]:
    """The `check()` entry for an argument that must be an integer >= 0."""
    return argument, value, isinstance(value, int) and value >= 0, "an integer >= 0"
