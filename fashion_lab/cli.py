"""The command line (LightningCLI): `python -m fashion_lab.cli fit|validate|test|predict`, or `fashion-lab ...`.

python -m fashion_lab.cli fit                                    # the seed: Fashion-MNIST, 5 epochs, then test
python -m fashion_lab.cli fit --config configs/k49.yaml          # the seed's homework: Kuzushiji-49
python -m fashion_lab.cli fit --model.loss mse --data.val_split 0.1
python -m fashion_lab.cli predict --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
python -m fashion_lab.cli test --ckpt_path last                  # the newest run's checkpoint, with its data
tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import pickle
import re
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType

import lightning as L
import torch
from jsonargparse import Namespace
from lightning import LightningDataModule
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from fashion_lab.callbacks import FiniteGuard, RNGState, TensorBoardFigures
from fashion_lab.errors import ConfigError, NonFiniteLossError
from fashion_lab.model import MLPClassifier
from fashion_lab.predictions import CSVPredictionWriter
from fashion_lab.sources import DataError

DESCRIPTION = (
    "fashion_lab: the Keras Fashion-MNIST / Kuzushiji-49 MLP study in PyTorch Lightning. "
    "`fit` trains (then tests the best checkpoint), `validate`/`test` evaluate, `predict` writes predictions.csv. "
    "`fashion-lab fit --help` explains every option. Runs land in ./lightning_logs: tensorboard --logdir lightning_logs"
)


class FashionLabCLI(LightningCLI):
    """LightningCLI with the seed's defaults, `num_classes` linked from data to model, and a test after `fit`.

    A checkpoint given to validate/test/predict brings its data module and settings (the command line overrides
    them); a signal ends the command with one line saying how to go on.
    """

    def __init__(self, *args, stop_signals: StopSignals | None = None, **kwargs) -> None:
        self.stop_signals = stop_signals or StopSignals()
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit only: evaluate the test set with the best checkpoint when training ends, as Keras' evaluate",
        )
        parser.add_argument(
            "--output",
            type=str | None,
            default=None,
            help="predict only: folder for predictions.csv (default: the run folder of --ckpt_path)",
        )
        parser.add_argument(
            "--flush_denormal",
            type=bool,
            default=True,
            help="flush denormal floats (below 1.2e-38) to zero on x86 CPUs, as TensorFlow's threads do: the same "
            "accuracy, without the slow path that tiny weights take (a fit with L2 1e-3 ran 1.6x slower without it)",
        )
        # Keras' steps_per_execution: 32 batch-32 optimizer steps per Lightning step, the same updates at a third of
        # the wall time (the framework's per-step cost dominates for this 0.1M-parameter MLP). 1 = plain batches.
        parser.set_defaults(
            {"data": {"class_path": "fashion_lab.FashionMNISTDataModule", "init_args": {"steps_per_execution": 32}}}
        )

    def before_instantiate_classes(self) -> None:
        # A run-level setting of the floating-point unit, so the CLI's: set before the first parallel torch op, it
        # holds for torch's worker threads too (a thread starts with its creator's floating-point state).
        torch.set_flush_denormal(self._get(self.config, "flush_denormal", default=True))

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str] | None) -> None:
        self.args = args  # kept: validate/test/predict parse again over the checkpoint's data settings
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Resolve `--ckpt_path last`, read the checkpoint weights-only, and take its settings.

        Overridden so that a missing, corrupt or crafted file is named instead of a torch/pickle traceback, a resumed
        run gets its model settings back (Lightning restores them only from a real path), and validate/test/predict
        get the checkpoint's data module and settings, under anything given on the command line or in a config.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand or self.config[subcommand].get("ckpt_path") is None:
            return
        self._resolve_ckpt_path(self.config[subcommand], subcommand)
        checkpoint = read_checkpoint(self.config[subcommand].ckpt_path)
        if subcommand != "fit" and self._checkpoint_data_as_defaults(checkpoint, subcommand):
            super().parse_arguments(self.parser, self.args)
            self._resolve_ckpt_path(self.config[subcommand], subcommand)
        super()._parse_ckpt_path()  # the model's settings (LightningCLI reads the file again, also weights-only)

    def _checkpoint_data_as_defaults(self, checkpoint: dict, subcommand: str) -> bool:
        """Make the checkpoint's data module (class and init args) the subcommand's default; False if it has none."""
        data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
        class_path = data.pop("_class_path", None)  # LightningCLI saves it with the data module's init args
        data.pop("_instantiator", None)
        if class_path is None:  # not written by this CLI: the data module stays as given
            return False
        if not is_data_module(class_path):
            raise CheckpointError(
                f"checkpoint {self.config[subcommand].ckpt_path} names the data module {class_path!r}, which is not "
                "one of fashion_lab's; refused (a checkpoint never chooses code to import). "
                "Fix: use a checkpoint that fit wrote, or pass --data explicitly."
            )
        self._subcommand_parsers[subcommand].set_defaults({"data": {"class_path": class_path, "init_args": data}})
        return True

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        try:
            return super().instantiate_trainer(**kwargs)
        except (ValueError, TypeError, ImportError, MisconfigurationException) as e:
            # The Trainer checks its own arguments, and every one of them comes from the command line or a config.
            raise ConfigError(lightning_refused(e)) from e

    def before_fit(self) -> None:
        """Refuse a fit that would train on nothing or monitor a validation set that does not exist."""
        val_split = getattr(self.datamodule, "val_split", 0)  # any LightningDataModule: may have none
        if not self.trainer.loggers:  # --trainer.logger false: nowhere to log the learning rate
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if not isinstance(cb, LearningRateMonitor)]
        if self.trainer.limit_train_batches == 0:
            raise ConfigError(
                "limit_train_batches=0 leaves no training batches. "
                "Fix: remove --trainer.limit_train_batches, or give it a positive value."
            )
        if val_split and self.trainer.limit_val_batches != 0:
            return
        no_val = "limit_val_batches=0" if val_split else f"val_split={val_split}"
        # the CLI's own best-epoch checkpoint has nothing to rank by: keep last.ckpt only
        self.trainer.callbacks = [cb for cb in self.trainer.callbacks if getattr(cb, "filename", None) != BEST]
        monitors = [
            f"{type(cb).__name__} monitors {cb.monitor}"
            for cb in self.trainer.callbacks
            if str(getattr(cb, "monitor", None) or "").startswith("val/")
        ]
        if self.model.hparams.lr_schedule == "reduce_on_plateau":
            monitors.append("lr_schedule=reduce_on_plateau monitors val/loss")
        if monitors:
            raise ConfigError(
                f"{no_val} leaves no validation set, but {' and '.join(monitors)}. "
                "Fix: keep a validation split (--data.val_split 0.2), or drop what monitors val/*."
            )

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit or self.trainer.interrupted:
            return
        ckpt = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        (scores,) = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt or None, verbose=False)
        print(
            f"Test ({'checkpoint ' + os.path.basename(ckpt) if ckpt else 'last weights'}): "
            f"loss {scores['test/loss']:.4f} - acc {scores['test/acc']:.4f} - "
            f"balanced acc {scores['test/balanced_acc']:.4f}"
        )

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException as e:
            launcher = self.trainer.strategy.launcher
            if launcher is not None and self.trainer.is_global_zero:
                # DDP's other ranks wait for this one in a collective and would each print a traceback ("connection
                # closed by peer") once it exits; this rank reports. Lightning does the same on Ctrl+C.
                launcher.kill(signal.SIGKILL)
            # Lightning ends a run stopped by either signal with SystemExit
            if not isinstance(e, (KeyboardInterrupt, SystemExit)) or self.stop_signals.received is None:
                raise
            raise self._stopped(subcommand) from e

    def _stopped(self, subcommand: str) -> Stopped:
        """What stopped the command, where, and the exact command that goes on from there."""
        sig, trainer = self.stop_signals.received, self.trainer
        where = f"{subcommand} stopped by {sig.name} at epoch {trainer.current_epoch}, step {trainer.global_step}"
        args = self.args if isinstance(self.args, list) else sys.argv[1:]
        last = last_checkpoint(trainer)
        if sig == signal.SIGTERM and slurm_requeues(trainer):
            message = f"{where}; SLURM requeues the job (Lightning's auto-requeue), and it resumes by itself."
        elif subcommand != "fit":
            message = f"{where}. Run it again: {command_line(args)}"
        elif last is None:
            message = f"{where}, before its first checkpoint. Start again: {command_line(args)}"
        else:
            message = f"{where}. Resume from its last finished epoch: {command_line(args, ckpt_path=last)}"
        status = exit_status(sig, trainer)
        return Stopped(message if trainer.is_global_zero else "", status)

    @staticmethod
    def _resolve_ckpt_path(config: Namespace, subcommand: str) -> None:
        """`last` = the newest run's last.ckpt (Lightning would look in the new, empty run). The checkpoint's run
        takes this command's output: a resumed fit and a test log into it (TensorBoard shows one run), and predict
        writes its CSV there (or to --output) without opening a run of its own."""
        logger = config.trainer.logger
        args = tensorboard_args(logger)
        runs = Path(args.save_dir) / args.name if args is not None else Path("lightning_logs")
        if config.ckpt_path == "last":
            found = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
            if not found:
                raise CheckpointError(
                    f"--ckpt_path last: no {runs}/version_*/checkpoints/last.ckpt to resume. "
                    "Fix: start without --ckpt_path, or give the path of a checkpoint."
                )
            config.ckpt_path = str(found[-1])
        ckpt = Path(config.ckpt_path)
        if not ckpt.is_file():
            raise CheckpointError(
                f"checkpoint {ckpt} does not exist. Fix: pass a .ckpt that fit wrote "
                "(lightning_logs/version_N/checkpoints/), or --ckpt_path last to resume the newest run."
            )
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
        if subcommand == "predict":  # Trainer(logger=False) writes to default_root_dir: no events file, no new run
            config.trainer.logger = False
            config.trainer.default_root_dir = (
                config.output or config.trainer.default_root_dir or str(run or ckpt.parent)
            )
        elif args is not None and run is not None and run.parent.resolve() == runs.resolve():
            args.version = run.name
        if subcommand == "fit":
            for stale in ckpt.parent.glob(".*.ckpt.*.part"):  # a save killed mid-write (SIGKILL, power loss)
                stale.unlink(missing_ok=True)


class CheckpointError(ConfigError):
    """--ckpt_path names a file that is missing, not a Lightning checkpoint, or crafted to run code."""


class Stopped(Exception):
    """A signal stopped the command; the message says where and how to go on, `status` is the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SaveRunConfig(SaveConfigCallback):
    """config.yaml records how a run was trained: only `fit` writes it, so a validate, test or predict with the
    run's checkpoint never replaces it."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


# The status a shell gives a command killed by a signal: 128 + its number.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


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
    environment = trainer._accelerator_connector.cluster_environment  # what Lightning's signal connector reads
    return isinstance(environment, SLURMEnvironment) and environment.auto_requeue


def exit_status(sig: signal.Signals, trainer: L.Trainer) -> int:
    """130 for SIGINT and 143 for SIGTERM, as a shell reports them; 0 for SIGTERM under SLURM's auto-requeue."""
    return 0 if sig == signal.SIGTERM and slurm_requeues(trainer) else EXIT_STATUS[sig]


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The run's last.ckpt, relative to the current folder when inside it; None before the first one is saved."""
    dirs = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    path = next((Path(d, "last.ckpt") for d in dirs if Path(d, "last.ckpt").is_file()), None)
    if path is None:
        return None
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


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


def read_checkpoint(path: str) -> dict:
    """torch.load with weights_only=True (tensors and plain data only: a crafted pickle cannot run code), and one
    CheckpointError naming the file for whatever else it holds."""
    fix = "Fix: pass a .ckpt that fit wrote (lightning_logs/version_N/checkpoints/)."
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise CheckpointError(
                f"checkpoint {path} is truncated or not a checkpoint (unreadable pickle). {fix}"
            ) from e
        raise CheckpointError(
            f"checkpoint {path} holds a Python object ({found.group(1)}) that would run code when loaded; refused. "
            f"{fix} Load only checkpoints from a source you trust."
        ) from e
    except Exception as e:  # torch.load fails on a bad file with errors of many types, none naming the file
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a checkpoint ({type(e).__name__}: {e}). {fix}"
        ) from e


def is_data_module(class_path: str) -> bool:
    """`class_path` names an already imported LightningDataModule subclass (checked without importing anything)."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and issubclass(cls, LightningDataModule)


def tensorboard_args(logger: object) -> Namespace | None:
    """The init args of a TensorBoardLogger config (Lightning's, or RunLogger), else None."""
    module, _, name = str(getattr(logger, "class_path", "")).rpartition(".")
    cls = getattr(importlib.import_module(module), name, None) if module else None
    return logger.init_args if isinstance(cls, type) and issubclass(cls, TensorBoardLogger) else None


# Mistakes in a config, a data file, a folder or a checkpoint: one line, not a traceback (FASHION_LAB_DEBUG=1 shows it).
# Only the package's own error types, Lightning's configuration errors and file-system errors that name a path; a bug
# keeps its traceback.
USER_ERRORS = (DataError, ConfigError, NonFiniteLossError, MisconfigurationException, OSError)
# the CLI's best-epoch checkpoint; dropped when there is no validation set to rank by
BEST = "epoch={epoch}-val_acc={val/acc:.4f}"


def checkpoint_callbacks() -> list[ModelCheckpoint]:
    """The best epoch by validation accuracy, and `last.ckpt` rewritten every epoch for `fit --ckpt_path last`.

    Two callbacks because Lightning 2.6 rewrites a `save_last` checkpoint only in epochs that also save a top-k one.
    """
    best = ModelCheckpoint(monitor="val/acc", mode="max", filename=BEST, auto_insert_metric_name=False)
    return [best, ModelCheckpoint(filename="last", enable_version_counter=False)]


def trainer_defaults() -> dict:
    """The seed's 5 epochs, TensorBoard in ./lightning_logs, atomic checkpoints, and callbacks that every run keeps."""
    return {
        "max_epochs": 5,  # the seed: model.fit(..., epochs=5)
        "logger": {
            "class_path": "fashion_lab.RunLogger",  # TensorBoard; each run claims its own version_N folder
            "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
        },
        "plugins": [{"class_path": "fashion_lab.AtomicCheckpointIO"}],
        "log_every_n_steps": 10,  # an epoch is 47 steps at steps_per_execution 32; Lightning warns above that
        # max_depth=2: one row per Keras-named layer with in/out shapes, like model.summary()
        "callbacks": [
            *checkpoint_callbacks(),
            ModelSummary(max_depth=2),
            LearningRateMonitor(logging_interval="step"),  # TensorBoard shows the schedule (lr-<Optimizer>)
            TensorBoardFigures(),
            CSVPredictionWriter(),
            FiniteGuard(),
            RNGState(),
        ],
    }


class OneStopLine(logging.Filter):
    """Drops Lightning's own notices of Ctrl+C and SIGTERM: the CLI prints one line, with the way to go on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return re.search(r"Detected KeyboardInterrupt|Received SIGTERM|Bypassing SIGTERM", str(record.msg)) is None


ONE_STOP_LINE = OneStopLine()


def cli_main(args: list[str] | None = None, run: bool = True) -> FashionLabCLI:
    """Build (and by default run) the CLI; mistakes exit with one line on stderr and status 1, signals with the
    shell's status (130 for Ctrl+C, 143 for SIGTERM) after one line saying how to resume."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.signal_connector"):
        logging.getLogger(name).addFilter(ONE_STOP_LINE)
    with StopSignals() as stop_signals:
        try:
            return make_cli(args, run, stop_signals=stop_signals)
        except Stopped as e:
            if str(e):
                print(e, file=sys.stderr)
            sys.exit(e.status)
        except KeyboardInterrupt:
            if stop_signals.received is None:
                raise
            print(
                f"stopped by {stop_signals.received.name} before the run started; nothing was written.", file=sys.stderr
            )
            sys.exit(EXIT_STATUS[stop_signals.received])
        except Exception as e:
            message = user_error_message(e)
            if message is None or os.environ.get("FASHION_LAB_DEBUG"):
                raise
            print(f"error: {message}\n(set FASHION_LAB_DEBUG=1 to see the traceback)", file=sys.stderr)
            sys.exit(1)


def make_cli(
    args: list[str] | None = None,
    run: bool = True,
    callbacks: list[Callback] | None = None,
    stop_signals: StopSignals | None = None,
) -> FashionLabCLI:
    """The CLI, built and (by default) run, raising what goes wrong; `callbacks` join every run's (fashion_lab.study
    passes its Optuna trial recorder this way)."""
    # Lightning 2.6 calls a torch 2.14 pytree API that warns on every run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    defaults = trainer_defaults()
    defaults["callbacks"] += callbacks or []
    return FashionLabCLI(
        MLPClassifier,
        LightningDataModule,  # any data module: the data sets, or ImageFilesDataModule for predict
        subclass_mode_data=True,
        seed_everything_default=42,
        trainer_defaults=defaults,
        save_config_callback=SaveRunConfig,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
        parser_kwargs={"description": DESCRIPTION, "prog": "fashion-lab"},
        stop_signals=stop_signals,
    )


def user_error_message(e: BaseException) -> str | None:
    """The one line a user's mistake behind `e` deserves, or None when `e` is a bug (it keeps its traceback)."""
    user_error = _user_error(e)
    return None if user_error is None else _message(user_error)


def _user_error(e: BaseException) -> BaseException | None:
    """The package's own error behind `e` (jsonargparse wraps a constructor's error in "Does not validate ..."),
    Lightning's configuration error, or a file-system error that names a path; None for anything else, which is a
    bug and keeps its traceback."""
    while e is not None:
        if isinstance(e, USER_ERRORS) and not (
            isinstance(e, OSError) and not isinstance(e, DataError) and not e.filename
        ):
            return e
        e = e.__cause__
    return None


def lightning_refused(e: BaseException) -> str:
    """One line for a configuration that Lightning itself refused: its words, and where to change the option."""
    return (
        f"Lightning refused the configuration: {' '.join(str(e).split())} "
        "Fix: change the option it names (`fashion-lab fit --help` lists every option)."
    )


def _message(e: BaseException) -> str:
    if isinstance(e, MisconfigurationException):
        return lightning_refused(e)
    if isinstance(e, OSError) and e.filename and not isinstance(e, DataError):
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = "free space there (or lift the file-size limit), then resume with --ckpt_path last"
        else:
            fix = (
                "choose a folder that you can create and write to (e.g. --trainer.logger.init_args.save_dir), "
                "and check that no file stands in its path"
            )
        return f"{e.strerror}: {e.filename}. Fix: {fix}."
    return str(e)


if __name__ == "__main__":
    cli_main()
