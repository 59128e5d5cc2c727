"""Stopping on SIGINT and SIGTERM: one line that says where the command stopped and the exact command that goes on,
and the shell's exit status for the signal."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

# The status a shell gives a command killed by a signal: 128 + its number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopped(Exception):
    """A signal stopped the command; the message says where and how to go on, `status` is the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StopSignals:
    """SIGINT and SIGTERM for the length of a command: remembers which came, so that the command ends with one line
    saying how to go on, and with the shell's status for that signal.

    Inside a Trainer, Lightning's own SIGTERM handler runs first and calls this one, and Lightning's loops stop after
    the current batch. Ctrl+C raises KeyboardInterrupt as Python does (Lightning then shuts down gracefully), and so
    does a SIGTERM outside a Trainer, where there is nothing to save. Checkpoints are written atomically
    (AtomicCheckpointIO), so neither way leaves a partial file.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python sets handlers only there
            self.previous = {s: signal.signal(s, self) for s in EXIT_STATUS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)
        if signum == signal.SIGINT or signal.getsignal(signal.SIGTERM) is self:
            raise KeyboardInterrupt


def slurm_requeues(trainer: L.Trainer) -> bool:
    """Lightning's SLURM auto-requeue is on: it requeues the job on SLURM's warning signal and expects status 0."""
    # Private, checked against Lightning 2.6.6: Lightning's signal connector decides on requeueing from this very
    # attribute, and no public one holds the environment for single-device runs (trainer.strategy has it only when
    # parallel). tests/project/test_private_members.py fails if either side changes.
    environment = trainer._accelerator_connector.cluster_environment
    return isinstance(environment, SLURMEnvironment) and environment.auto_requeue


def exit_status(sig: signal.Signals, trainer: L.Trainer) -> int:
    """130 for SIGINT and 143 for SIGTERM, as a shell reports them; 0 for SIGTERM under SLURM's auto-requeue."""
    return 0 if sig == signal.SIGTERM and slurm_requeues(trainer) else EXIT_STATUS[sig]


def command_line(args: list[str], ckpt_path: str | None = None) -> str:
    """The command that runs `args` again, with `--ckpt_path` replaced when one is given.

    >>> command_line(["fit", "--data.val_split", "0.1", "--ckpt_path", "old.ckpt"], "runs/last.ckpt")
    'python -m fashion_lab.cli fit --data.val_split 0.1 --ckpt_path runs/last.ckpt'
    """
    kept, skip = [], False
    for arg in args:
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        skip = ckpt_path is not None and arg == "--ckpt_path"
        if not skip:
            kept.append(arg)
    if ckpt_path is not None:
        kept += ["--ckpt_path", ckpt_path]
    program = "fashion-lab" if Path(sys.argv[0]).name == "fashion-lab" else "python -m fashion_lab.cli"
    return f"{program} {shlex.join(kept)}"


def stopped_message(subcommand: str, sig: signal.Signals, trainer: L.Trainer, args: list[str], last: str | None) -> str:
    """What stopped the command, where, and the exact command that goes on from there (`last`: the run's
    last.ckpt, None before the first one)."""
    where = f"{subcommand} stopped by {sig.name} at epoch {trainer.current_epoch}, step {trainer.global_step}"
    if sig == signal.SIGTERM and slurm_requeues(trainer):
        return f"{where}; SLURM requeues the job (Lightning's auto-requeue), and it resumes by itself."
    if subcommand != "fit":
        return f"{where}. Run it again: {command_line(args)}"
    if last is None:
        return f"{where}, before its first checkpoint. Start again: {command_line(args)}"
    return f"{where}. Resume from its last finished epoch: {command_line(args, ckpt_path=last)}"


class OneStopLine(logging.Filter):
    """Drops Lightning's own notices of Ctrl+C and SIGTERM: the CLI prints one line, with the way to go on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return re.search(r"Detected KeyboardInterrupt|Received SIGTERM|Bypassing SIGTERM", str(record.msg)) is None


ONE_STOP_LINE = OneStopLine()


def quiet_lightning_stop_notices() -> None:
    """Filter Lightning's stop notices out of the loggers that print them (idempotent: one filter object)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.signal_connector"):
        logging.getLogger(name).addFilter(ONE_STOP_LINE)
