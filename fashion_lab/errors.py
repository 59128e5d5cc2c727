"""The package's user-facing errors: each names the problem and the fix, and the CLI prints it as one line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """An argument is out of range or not a known name; the message names the argument, the value and the fix."""


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
