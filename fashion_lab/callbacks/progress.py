"""KerasProgressBar: what Keras 3's `fit`, `evaluate` and `predict` print, as a Lightning progress bar.

    trainer = L.Trainer(callbacks=[KerasProgressBar()])   # the CLI's default

In a terminal (Keras' `verbose=1`), one line per epoch that stays on screen, redrawn while the epoch runs:

Epoch 2/5
1500/1500 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step - accuracy: 0.8567 - loss: 0.3978 - val_accuracy: 0.8576 - val_loss: 0.3857

Without one (a pipe, a file, CI), Keras' `verbose=2` line, written once when the epoch ends:

1500/1500 - 2s - 1ms/step - accuracy: 0.8567 - loss: 0.3978 - val_accuracy: 0.8576 - val_loss: 0.3857

The format is keras/src/utils/progbar.py's (Keras 3.15): the count padded to the target's digits, a 20-character bar,
the ETA while running and the elapsed seconds when done, the time per step in s, ms or us. A line that would not fit
the terminal loses, in turn, the bar, the long metric names (`accuracy` → `acc`, Keras' own name for it), the time
per step, the elapsed time, then whole metrics from the end: it never wraps mid-metric.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.trainer.states import TrainerFn

from fashion_lab.steps_per_execution import NoStepHooks

Display = Literal["terminal", "notebook", "plain"]
BAR_WIDTH = 20  # Keras' Progbar(width=20)
SHORT_NAMES = {"accuracy": "acc"}  # Keras logs metrics=["acc"] under this name
# keras/src/utils/progbar.py's escape codes: bold count and time, green for the steps done, white for the rest
BOLD, GREEN, WHITE, RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def format_value(value: float) -> str:
    """Keras' metric format: 4 decimals, or scientific below 1e-3.

    >>> format_value(0.39781), format_value(0.00012345)
    ('0.3978', '1.2345e-04')
    """
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def format_time_per_step(seconds: float) -> str:
    """Keras' `_format_time`: whole seconds, milliseconds or microseconds per step.

    >>> format_time_per_step(0.00123), format_time_per_step(2.4), format_time_per_step(0.0000512)
    ('1ms/step', '2s/step', '51us/step')
    """
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_eta(seconds: float) -> str:
    """Keras' estimated time left: `42s`, `3:05` or `1:02:03`.

    >>> format_eta(42.7), format_eta(185), format_eta(3723)
    ('42s', '3:05', '1:02:03')
    """
    whole = int(seconds)  # Keras formats with %d, which truncates
    if whole > 3600:
        return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    if whole > 60:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole}s"


def count_text(current: int, target: int | None) -> str:
    """`  24/1500`: the step count padded to the target's digits (`     24/Unknown` without a target)."""
    if not target:
        return f"{current:7d}/Unknown"
    return f"{current:{int(math.log10(target)) + 1}d}/{target}"


def short_name(name: str) -> str:
    """`val_accuracy` → `val_acc`: the name Keras logs the same metric under when compiled with `metrics=["acc"]`."""
    base = name.removeprefix("val_")
    return name[: len(name) - len(base)] + SHORT_NAMES.get(base, base)


def visible_length(text: str) -> int:
    return len(ESCAPE.sub("", text))


def progress_line(
    current: int,
    target: int | None,
    time_text: str,
    per_step: float,
    metrics: list[tuple[str, float]],
    width: int | None = None,
    colour: bool = True,
) -> str:
    """Keras' `verbose=1` line, shortened to `width` visible characters (None: no limit).

    >>> progress_line(1500, 1500, "2s", 0.0012, [("loss", 0.3978), ("val_accuracy", 0.8576)], colour=False)
    '1500/1500 ━━━━━━━━━━━━━━━━━━━━ 2s 1ms/step - loss: 0.3978 - val_accuracy: 0.8576'
    >>> progress_line(1500, 1500, "2s", 0.0012, [("loss", 0.3978), ("val_accuracy", 0.8576)], width=45, colour=False)
    '1500/1500 2s - loss: 0.3978 - val_acc: 0.8576'
    """

    def style(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if colour and text else text

    count = style(BOLD, count_text(current, target))
    done = int(BAR_WIDTH * current / target) if target else 0
    bar = style(GREEN, "━" * done) + style(WHITE, "━" * (BAR_WIDTH - done)) if target else ""
    short_metrics = [(short_name(name), value) for name, value in metrics]
    # each candidate drops one more thing than the one before: the first that fits is printed
    candidates = [
        (bar, time_text, per_step, metrics),
        ("", time_text, per_step, metrics),
        ("", time_text, per_step, short_metrics),
        ("", time_text, None, short_metrics),
        ("", "", None, short_metrics),
    ]
    candidates += [("", "", None, short_metrics[:n]) for n in range(len(metrics) - 1, -1, -1)]
    for bar_part, time_part, step_part, shown in candidates:
        line = " ".join(p for p in (count, bar_part, style(BOLD, time_part)) if p)
        if step_part is not None:
            line += " " + format_time_per_step(step_part)
        line += "".join(f" - {name}: {format_value(value)}" for name, value in shown)
        if width is None or visible_length(line) <= width:
            return line
    return line


def plain_line(
    current: int, target: int | None, elapsed: float, per_step: float, metrics: list[tuple[str, float]]
) -> str:
    """Keras' `verbose=2` line, written once when an epoch (or an evaluation) ends.

    >>> plain_line(1500, 1500, 2.3, 0.0012, [("accuracy", 0.85672), ("val_loss", 0.38571)])
    '1500/1500 - 2s - 1ms/step - accuracy: 0.8567 - val_loss: 0.3857'
    """
    line = f"{count_text(current, target)} - {elapsed:.0f}s - {format_time_per_step(per_step)}"
    return line + "".join(f" - {name}: {format_value(value)}" for name, value in metrics)


def display_of(stream: Any) -> Display:
    """How a stream shows a line redrawn with carriage returns: Keras' `_dynamic_display` test, by the stream itself.

    A Jupyter kernel's output stream (ipykernel's OutStream) and PyCharm's run console redraw like a terminal but
    have no width; anything else that is not a terminal gets plain lines.
    """
    if type(stream).__module__.startswith("ipykernel"):
        return "notebook"
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or "PYCHARM_HOSTED" in os.environ:
        return "terminal"
    return "plain"


@dataclass
class Line:
    """One Keras Progbar: an epoch's or an evaluation's steps and their timing."""

    target: int | None
    start: float = field(default_factory=time.monotonic)
    current: int = 0
    first_steps: int = 0  # steps done when the first batch ended: Keras leaves that batch out of the time per step
    after_first: float | None = None

    def advance(self, current: int, now: float) -> None:
        if self.after_first is None:
            self.first_steps, self.after_first = current, now
        self.current = current

    def per_step(self, now: float) -> float:
        """Keras' `_estimate_step_duration`: the steps after the first batch, or all of them while there is one."""
        if not self.current:
            return 0.0
        if self.after_first is not None and self.current > self.first_steps:
            return (now - self.after_first) / (self.current - self.first_steps)
        return (now - self.start) / self.current


class KerasProgressBar(NoStepHooks, ProgressBar):
    """Keras' progress bar for `fit`, `validate`, `test` and `predict`: `Epoch k/N`, then one line per epoch.

    The bar counts optimizer steps: a data module with Keras' `steps_per_execution = K` hands over lists of K
    mini-batches, and its `steps_per_epoch` gives the total (1500/1500 for the seed's 48,000 images in batches of 32).
    Metrics are read from `trainer.callback_metrics` once an epoch ends: the training ones under their Keras names,
    then the validation ones prefixed `val_` (only for epochs that validated). In `fit` validation is silent, as in
    Keras; `validate`, `test` and `predict` print Keras' evaluate/predict line.

    Args:
        metrics: the metrics shown, as {Keras name: logged name}; in order, Keras' `accuracy` then `loss`.
        key: how a logged name is keyed in `callback_metrics`, with `{stage}` (train, val, test) and `{name}`.
        interval: the least seconds between two redraws of a running line (Keras' Progbar `interval`).
    """

    def __init__(
        self, metrics: dict[str, str] | None = None, key: str = "{stage}/{name}", interval: float = 0.05
    ) -> None:
        super().__init__()
        self.metrics = dict(metrics) if metrics is not None else {"accuracy": "acc", "loss": "loss"}
        self.key, self.interval = key, interval
        self.enabled = True
        self.line: Line | None = None
        self.finished: tuple[Line, float] | None = None  # an ended epoch waiting for its training metrics
        self.validated = False
        self.last_draw, self.drawn_width = 0.0, 0  # when and how wide the running line was last drawn

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print above the running line (`LightningModule.print` comes here); the next redraw brings it back."""
        self._erase()
        print(*args, **kwargs)

    # -- fit ---------------------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_finished_epoch()
        if not self.enabled:
            return
        epochs = trainer.max_epochs
        if epochs is None or epochs < 0:
            self._write(f"Epoch {trainer.current_epoch + 1}\n")
        elif epochs > 1:  # Keras prints no header for a single epoch
            self._write(f"Epoch {trainer.current_epoch + 1}/{epochs}\n")
        self.line, self.validated, self.last_draw = Line(self._train_steps(trainer)), False, 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.enabled and self.line is not None:
            steps = (batch_idx + 1) * self._steps_per_batch(trainer)
            self._advance(min(steps, self.line.target or steps))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.validated = True
        elif trainer.state.fn == TrainerFn.VALIDATING:
            self._end_evaluation(trainer, "val")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation has run; the LightningModule's own on_train_epoch_end, which Lightning calls after this hook,
        # may still log the epoch's training metrics: the line is printed when they are in (next epoch or the end).
        if self.enabled and self.line is not None:
            self._erase()
            self.finished, self.line = (self.line, time.monotonic()), None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_finished_epoch()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._print_finished_epoch()
        if self.drawn_width:  # a running line: the error's message starts on a line of its own
            self._write("\n")
            self.drawn_width = 0
        self.line = None

    # -- validate, test, predict -------------------------------------------------------------------------------
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._start_evaluation(sum(trainer.num_val_batches))

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_evaluation(sum(trainer.num_test_batches))

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_evaluation(sum(trainer.num_predict_batches))

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._advance_evaluation()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._advance_evaluation()

    def on_predict_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self._advance_evaluation()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_evaluation(trainer, "test")

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before a prediction writer's epoch-end output, as Keras' predict line comes before what the caller prints
        self._end_evaluation(trainer, None)

    # -- the lines ---------------------------------------------------------------------------------------------
    def _steps_per_batch(self, trainer: L.Trainer) -> int:
        """Keras' steps_per_execution of the data module: a training batch is a list of that many mini-batches."""
        return getattr(getattr(trainer, "datamodule", None), "steps_per_execution", 1)

    def _train_steps(self, trainer: L.Trainer) -> int | None:
        """Optimizer steps in this epoch: the data module counts its mini-batches (the last list may be short)."""
        batches, k = self.total_train_batches, self._steps_per_batch(trainer)
        if math.isinf(batches):
            return None
        per_epoch = getattr(trainer.datamodule, "steps_per_epoch", None) if k > 1 else None
        return min(per_epoch, int(batches) * k) if per_epoch else int(batches) * k

    def _start_evaluation(self, batches: float) -> None:
        if self.enabled:
            self.line, self.last_draw = Line(None if math.isinf(batches) else int(batches)), 0.0

    def _advance_evaluation(self) -> None:
        if self.enabled and self.line is not None:
            self._advance(self.line.current + 1)

    def _end_evaluation(self, trainer: L.Trainer, stage: str | None) -> None:
        if self.enabled and self.line is not None:
            metrics = self._metrics(trainer, stage, "") if stage else []
            self._finish(self.line, time.monotonic(), metrics)
            self.line = None

    def _print_finished_epoch(self) -> None:
        if self.finished is None:
            return
        (line, end), self.finished = self.finished, None
        trainer = self.trainer
        metrics = self._metrics(trainer, "train", "")
        metrics += self._metrics(trainer, "val", "val_") if self.validated else []
        self._finish(line, end, metrics)

    def _metrics(self, trainer: L.Trainer, stage: str, prefix: str) -> list[tuple[str, float]]:
        logged = trainer.callback_metrics
        keys = {name: self.key.format(stage=stage, name=logged_name) for name, logged_name in self.metrics.items()}
        return [(prefix + name, float(logged[key])) for name, key in keys.items() if key in logged]

    def _advance(self, current: int) -> None:
        now = time.monotonic()
        self.line.advance(current, now)
        if display_of(sys.stdout) == "plain" or now - self.last_draw < self.interval:
            return
        line = self.line
        eta = line.per_step(now) * (line.target - line.current) if line.target else None
        time_text = format_eta(eta) if eta is not None else f"{now - line.start:.0f}s"
        self._draw(progress_line(line.current, line.target, time_text, line.per_step(now), [], self._width()))
        self.last_draw = now

    def _finish(self, line: Line, end: float, metrics: list[tuple[str, float]]) -> None:
        """The line that stays: Keras' finalized Progbar, with the elapsed time."""
        line.target = line.target or line.current
        line.current = line.target
        elapsed, per_step = end - line.start, line.per_step(end)
        if display_of(sys.stdout) == "plain":
            self._write(plain_line(line.current, line.target, elapsed, per_step, metrics) + "\n")
            return
        self._draw(progress_line(line.current, line.target, f"{elapsed:.0f}s", per_step, metrics, self._width()))
        self._write("\n")
        self.drawn_width = 0

    def _width(self) -> int | None:
        """Columns a line may fill: one less than the terminal's, so the cursor never wraps; a notebook has no limit."""
        if display_of(sys.stdout) == "notebook":
            return None
        return shutil.get_terminal_size().columns - 1

    def _draw(self, text: str) -> None:
        """Redraw the running line: back to its start, and blanks over what the previous one had beyond it."""
        width = visible_length(text)
        self._write("\r" + text + " " * max(0, self.drawn_width - width))
        self.drawn_width = width

    def _erase(self) -> None:
        if self.drawn_width:
            self._write("\r" + " " * self.drawn_width + "\r")
            self.drawn_width = 0

    @staticmethod
    def _write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
