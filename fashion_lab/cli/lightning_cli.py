"""FashionLabCLI: LightningCLI with the seed's defaults, a test after `fit`, checkpoints that bring their data, one
line for a mistake and one for a signal; `cli_main` runs it as the command, `make_cli` builds it for Python."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from typing import Literal

import lightning as L
import torch
import yaml
from lightning import LightningDataModule
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from fashion_lab.callbacks import (
    FiniteGuard,
    HiddenUnitsImage,
    RNGState,
    TensorBoardFigures,
    TensorBoardHParams,
    WeightHistograms,
)
from fashion_lab.callbacks.progress import KerasProgressBar
from fashion_lab.checkpoints import read_checkpoint
from fashion_lab.cli.checkpoints import BEST, checkpoint_callbacks, data_defaults, last_checkpoint, resolve_ckpt_path
from fashion_lab.cli.notices import quiet_lightning_chatter, say_training_device
from fashion_lab.cli.signals import (
    EXIT_STATUS,
    Stopped,
    StopSignals,
    exit_status,
    quiet_lightning_stop_notices,
    stopped_message,
)
from fashion_lab.cli.user_errors import exit_on_user_error, lightning_refused, quiet_disk_full_in_threads
from fashion_lab.errors import ConfigError, check
from fashion_lab.model import MLPClassifier
from fashion_lab.picture_files import ImageFilesDataModule  # noqa: F401 (imported: `--data ImageFilesDataModule`)
from fashion_lab.predictions import CSVPredictionWriter
from fashion_lab.summary import KerasSummary

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
        try:  # LightningCLI runs the subcommand in its constructor: what the run raises comes out here
            super().__init__(*args, **kwargs)
        except BaseException as e:
            self._stop_other_ranks()
            # Lightning ends a run stopped by either signal with SystemExit
            if not isinstance(e, (KeyboardInterrupt, SystemExit)) or self.stop_signals.received is None:
                raise
            raise self._stopped() from e

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
            "--test_weights",
            type=Literal["best", "final"],
            default="best",
            help="fit only: the weights that test evaluates: best (the best val/acc checkpoint) or final (the weights "
            "training ended with, as Keras' evaluate after fit; configs/tutorial_as_printed.yaml)",
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
        # Keras' steps_per_execution: 32 optimizer steps per Lightning step, the same updates with the framework's
        # per-step cost, larger than this small network's step, paid once per 32 (1 = plain batches)
        parser.set_defaults(
            {"data": {"class_path": "fashion_lab.FashionMNISTDataModule", "init_args": {"steps_per_execution": 32}}}
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str] | None) -> None:
        """Parse, then resolve `--ckpt_path last` and read the checkpoint weights-only.

        A missing, corrupt or crafted file is named instead of a torch/pickle traceback, and a resumed run gets its
        model settings back (LightningCLI restores them after this, but only from a real path). validate, test and
        predict take the checkpoint's data module and settings as defaults, under the command line and configs:
        jsonargparse applies defaults only while parsing, so those parse a second time.
        """
        self.args = args  # kept for the command that resumes after a signal
        check_configs_have_settings(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand or self.config[subcommand].get("ckpt_path") is None:
            return
        resolve_ckpt_path(self.config[subcommand], subcommand)
        path = self.config[subcommand].ckpt_path
        checkpoint = read_checkpoint(path)
        data = data_defaults(checkpoint, path) if subcommand != "fit" else None
        if data is not None:
            parser.set_defaults({f"{subcommand}.data": data})
            super().parse_arguments(parser, args)
            resolve_ckpt_path(self.config[subcommand], subcommand)

    def before_instantiate_classes(self) -> None:
        # A run-level setting of the floating-point unit, so the CLI's: set before the first parallel torch op, it
        # holds for torch's worker threads too (a thread starts with its creator's floating-point state).
        config = self.config[self.subcommand] if self.subcommand else self.config
        torch.set_flush_denormal(config.get("flush_denormal", True))

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config.get("trainer", {})
        callbacks = trainer_config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]  # one callback may come bare
        own_bar = any(isinstance(cb, ProgressBar) for cb in callbacks)
        if trainer_config.get("enable_progress_bar") is False or own_bar:
            # Lightning refuses a progress-bar callback beside enable_progress_bar=False, or a second one
            defaults = [cb for cb in self.trainer_defaults["callbacks"] if not isinstance(cb, KerasProgressBar)]
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults}
        check_trainer_counts(trainer_config)
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (ValueError, TypeError, ImportError, MisconfigurationException) as e:
            # The Trainer checks its own arguments, and every one of them comes from the command line or a config.
            raise ConfigError(lightning_refused(e)) from e
        if trainer_config.get("enable_model_summary") is False:
            # Lightning's flag only stops it adding a default summary; the CLI's own is a callback, so drop it here
            trainer.callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, KerasSummary)]
        return trainer

    def before_fit(self) -> None:
        """Refuse a fit that would train on nothing or monitor a validation set that does not exist."""
        say_training_device(self.trainer)
        val_split = getattr(self.datamodule, "val_split", 0)  # any LightningDataModule: may have none
        if not self.trainer.loggers:  # --trainer.logger false: nowhere to log the learning rate
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if not isinstance(cb, LearningRateMonitor)]
        if self.trainer.limit_train_batches == 0:
            raise ConfigError(
                "limit_train_batches=0 leaves no training batches. "
                "Fix: remove --trainer.limit_train_batches, or give it a positive value."
            )
        if self.trainer.val_check_interval == 0:  # Lightning itself divides by it, after the first epoch's setup
            raise ConfigError(
                "val_check_interval=0 never validates (it is a fraction of an epoch, or a number of batches). "
                "Fix: remove --trainer.val_check_interval, or give it a positive value (1.0: once per epoch)."
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
        best = self.config.fit.test_weights == "best" and self.trainer.checkpoint_callback
        ckpt = self.trainer.checkpoint_callback.best_model_path if best else ""
        bar = self.trainer.progress_bar_callback
        if bar is not None:  # the Test line below is this evaluation's one line
            bar.disable()
        try:
            (scores,) = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt or None, verbose=False)
        finally:
            if bar is not None:
                bar.enable()
        print(
            f"Test ({'checkpoint ' + os.path.basename(ckpt) if ckpt else 'last weights'}): "
            f"loss {scores['test/loss']:.4f} - acc {scores['test/acc']:.4f} - "
            f"balanced acc {scores['test/balanced_acc']:.4f}"
        )

    def _stop_other_ranks(self) -> None:
        """DDP's other ranks wait for this one in a collective and would each print a traceback ("connection closed
        by peer") once it exits; this rank reports. Lightning does the same on Ctrl+C."""
        trainer = getattr(self, "trainer", None)  # None: it failed before the Trainer existed
        launcher = trainer.strategy.launcher if trainer is not None else None
        if launcher is not None and trainer.is_global_zero:
            launcher.kill(signal.SIGKILL)

    def _stopped(self) -> Stopped:
        """Stopped by a signal: where, the exact command that goes on from there, and the exit status."""
        sig, trainer = self.stop_signals.received, getattr(self, "trainer", None)
        if trainer is None:  # a signal while parsing: nothing ran, nothing was written
            return Stopped(f"stopped by {sig.name} before the run started; nothing was written.", EXIT_STATUS[sig])
        args = self.args if isinstance(self.args, list) else sys.argv[1:]
        message = stopped_message(self.subcommand, sig, trainer, args, last_checkpoint(trainer))
        return Stopped(message if trainer.is_global_zero else "", exit_status(sig, trainer))


def check_trainer_counts(trainer: dict) -> None:
    """The Trainer's counts that Lightning accepts below their meaningful range and then ignores or misreads (a
    negative log_every_n_steps logs at odd steps, a negative min_epochs is no minimum): refused, naming the option."""
    get = trainer.get
    check(
        [
            (f"trainer.{name}", get(name), get(name) is None or get(name) >= low, allowed)
            for name, low, allowed in [
                ("log_every_n_steps", 0, "an integer >= 0 (0: no per-step logging)"),
                ("min_epochs", 0, "an integer >= 0, or null"),
                ("min_steps", 0, "an integer >= 0, or null"),
                ("check_val_every_n_epoch", 1, "an integer >= 1, or null (validate by val_check_interval only)"),
                ("num_sanity_val_steps", -1, "an integer >= 0, or -1 (the whole validation set)"),
                ("accumulate_grad_batches", 1, "an integer >= 1"),
                ("gradient_clip_val", 0, "a number >= 0, or null"),
                ("reload_dataloaders_every_n_epochs", 0, "an integer >= 0"),
            ]
        ]
    )


def check_configs_have_settings(args: list[str]) -> None:
    """An empty --config file (or one of comments only) named as such; jsonargparse says "Unexpected config: "."""
    for arg, following in zip(args, [*args[1:], None], strict=True):
        if arg in ("--config", "-c"):
            given = following
        elif arg.startswith("--config="):
            given = arg.removeprefix("--config=")
        else:
            continue
        if not given or not os.path.isfile(given):
            continue
        with open(given, encoding="utf-8", errors="replace") as f:
            try:
                settings = yaml.safe_load(f)
            except yaml.YAMLError:  # jsonargparse names what it cannot parse
                continue
            if settings is None:
                raise ConfigError(
                    f"--config {given} holds no settings (it is empty, or comments only). Fix: put settings in it "
                    "(`fashion-lab fit --print_config` prints them all), or leave --config out."
                )


class SaveRunConfig(SaveConfigCallback):
    """config.yaml records how a run was trained: only `fit` writes it, so a validate, test or predict with the
    run's checkpoint never replaces it."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


def trainer_defaults(hparams: dict | None = None) -> dict:
    """The seed's 5 epochs, TensorBoard in ./lightning_logs, atomic checkpoints, and callbacks that every run keeps;
    `hparams` are more columns for TensorBoard's HPARAMS tab."""
    return {
        "max_epochs": 5,  # the seed: model.fit(..., epochs=5)
        "logger": {
            # TensorBoard in Keras' layout (train and validation runs, step = epoch) with the model's graph; each run
            # claims its own version_N folder
            "class_path": "fashion_lab.KerasTensorBoardLogger",
            "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False, "log_graph": True},
        },
        "plugins": [{"class_path": "fashion_lab.AtomicCheckpointIO"}],
        "log_every_n_steps": 10,  # an epoch is 47 steps at steps_per_execution 32; Lightning warns above that
        "callbacks": [
            *checkpoint_callbacks(),
            KerasSummary(),  # Keras' model.summary(): one row per Keras layer, exact parameter counts
            KerasProgressBar(),  # Keras' fit console: Epoch k/N, then one line per epoch with its metrics
            LearningRateMonitor(logging_interval="step"),  # TensorBoard shows the schedule (lr-<Optimizer>)
            TensorBoardFigures(),
            TensorBoardHParams(hparams),  # the HPARAMS tab: hyperparameters with the run's results
            WeightHistograms(),  # Keras' histogram_freq=1: HISTOGRAMS and DISTRIBUTIONS
            HiddenUnitsImage(),  # IMAGES: the first Dense kernel, a tile per unit
            CSVPredictionWriter(),
            FiniteGuard(),
            RNGState(),
        ],
    }


def cli_main(args: list[str] | None = None, run: bool = True) -> FashionLabCLI:
    """Build (and by default run) the CLI; mistakes exit with one line on stderr and status 1, signals with the
    shell's status (130 for Ctrl+C, 143 for SIGTERM) after one line saying how to resume."""
    quiet_lightning_stop_notices()
    quiet_disk_full_in_threads()
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
            exit_on_user_error(e)
            raise


def make_cli(
    args: list[str] | None = None,
    run: bool = True,
    callbacks: list[Callback] | None = None,
    stop_signals: StopSignals | None = None,
    hparams: dict | None = None,
) -> FashionLabCLI:
    """The CLI, built and (by default) run, raising what goes wrong; `callbacks` join every run's (fashion_lab.studies
    passes its Optuna trial recorder this way), `hparams` join the run's HPARAMS columns (a trial's variant, seed)."""
    # Lightning 2.6 calls a torch 2.14 pytree API that warns on every run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    quiet_lightning_chatter()
    defaults = trainer_defaults(hparams)
    defaults["callbacks"] += callbacks or []
    return FashionLabCLI(
        MLPClassifier,
        # any data module: the data sets, or ImageFilesDataModule for predict (jsonargparse finds a short class name
        # such as `--data ImageFilesDataModule` among the subclasses imported)
        LightningDataModule,
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
