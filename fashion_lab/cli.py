"""The command line (LightningCLI): `python -m fashion_lab.cli fit|validate|test|predict`, or `fashion-lab ...`.

python -m fashion_lab.cli fit                                    # the seed: Fashion-MNIST, 5 epochs, then test
python -m fashion_lab.cli fit --config configs/k49.yaml          # the seed's homework: Kuzushiji-49
python -m fashion_lab.cli fit --model.loss mse --data.val_split 0.1
python -m fashion_lab.cli predict --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from jsonargparse import Namespace
from lightning import LightningDataModule
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

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
    """LightningCLI with the seed's defaults, `num_classes` linked from data to model, and a test after `fit`."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit only: evaluate the test set with the best checkpoint when training ends, as Keras' evaluate",
        )
        # Keras' steps_per_execution: 32 batch-32 optimizer steps per Lightning step, the same updates at a third of
        # the wall time (the framework's per-step cost dominates for this 0.1M-parameter MLP). 1 = plain batches.
        parser.set_defaults(
            {"data": {"class_path": "fashion_lab.FashionMNISTDataModule", "init_args": {"steps_per_execution": 32}}}
        )

    def _parse_ckpt_path(self) -> None:
        """Resolve `--ckpt_path last` and check the file before LightningCLI reads the checkpoint's hyperparameters.

        Overridden so that a resumed run gets its model settings back (Lightning restores them only from a real
        path) and a missing or corrupt file is named, instead of a torch/pickle traceback.
        """
        subcommand = self.config.get("subcommand")
        if subcommand:
            self._resolve_ckpt_path(self.config[subcommand], resume=subcommand == "fit")
        try:
            super()._parse_ckpt_path()
        except Exception as e:  # torch.load fails on a bad file with errors of many types, none naming the file
            raise CheckpointError(
                f"checkpoint {self.config[subcommand].ckpt_path} is truncated or not a checkpoint "
                f"({type(e).__name__}: {e}). Fix: pass a .ckpt that fit wrote (lightning_logs/version_N/checkpoints/)."
            ) from e

    def before_fit(self) -> None:
        if not self.datamodule.val_split:  # no validation set: nothing to rank by, keep last.ckpt only
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if getattr(cb, "monitor", None) is None]
        if not self.trainer.loggers:  # --trainer.logger false: nowhere to log the learning rate
            self.trainer.callbacks = [cb for cb in self.trainer.callbacks if not isinstance(cb, LearningRateMonitor)]

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

    @staticmethod
    def _resolve_ckpt_path(config: Namespace, resume: bool) -> None:
        """`last` = the newest run's last.ckpt (Lightning would look in the new, empty run); a resumed fit keeps
        logging into the run it resumes, so TensorBoard shows one continuous run."""
        if config.ckpt_path is None:
            return
        logger = config.trainer.logger
        args = getattr(logger, "init_args", None)
        tensorboard = str(getattr(logger, "class_path", "")).endswith("TensorBoardLogger")
        runs = Path(args.save_dir) / args.name if tensorboard else Path("lightning_logs")
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
        if resume and tensorboard and ckpt.parent.name == "checkpoints" and ckpt.parents[2].resolve() == runs.resolve():
            args.version = ckpt.parent.parent.name


class CheckpointError(ConfigError):
    """--ckpt_path names a file that is missing or not a Lightning checkpoint."""


# Mistakes in a config, a data file, a folder or a checkpoint: one line, not a traceback (FASHION_LAB_DEBUG=1 shows it).
# Only the package's own error types and file-system errors that name a path; a bug keeps its traceback.
USER_ERRORS = (DataError, ConfigError, NonFiniteLossError, OSError)


def checkpoint_callbacks() -> list[ModelCheckpoint]:
    """The best epoch by validation accuracy, and `last.ckpt` rewritten every epoch for `fit --ckpt_path last`.

    Two callbacks because Lightning 2.6 rewrites a `save_last` checkpoint only in epochs that also save a top-k one.
    """
    best = ModelCheckpoint(
        monitor="val/acc",
        mode="max",
        filename="epoch={epoch}-val_acc={val/acc:.4f}",
        auto_insert_metric_name=False,
    )
    return [best, ModelCheckpoint(filename="last", enable_version_counter=False)]


def trainer_defaults() -> dict:
    """The seed's 5 epochs, TensorBoard in ./lightning_logs, and callbacks that every run keeps."""
    return {
        "max_epochs": 5,  # the seed: model.fit(..., epochs=5)
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
        },
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


def cli_main(args: list[str] | None = None, run: bool = True) -> FashionLabCLI:
    """Build (and by default run) the CLI; mistakes exit with one line on stderr and status 1."""
    try:
        return make_cli(args, run)
    except Exception as e:
        message = user_error_message(e)
        if message is None or os.environ.get("FASHION_LAB_DEBUG"):
            raise
        print(f"error: {message}\n(set FASHION_LAB_DEBUG=1 to see the traceback)", file=sys.stderr)
        sys.exit(1)


def make_cli(args: list[str] | None = None, run: bool = True, callbacks: list[Callback] | None = None) -> FashionLabCLI:
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
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
        parser_kwargs={"description": DESCRIPTION, "prog": "fashion-lab"},
    )


def user_error_message(e: BaseException) -> str | None:
    """The one line a user's mistake behind `e` deserves, or None when `e` is a bug (it keeps its traceback)."""
    user_error = _user_error(e)
    return None if user_error is None else _message(user_error)


def _user_error(e: BaseException) -> BaseException | None:
    """The package's own error behind `e` (jsonargparse wraps a constructor's error in "Does not validate ..."),
    or a file-system error that names a path; None for anything else, which is a bug and keeps its traceback."""
    while e is not None:
        if isinstance(e, USER_ERRORS) and not (
            isinstance(e, OSError) and not isinstance(e, DataError) and not e.filename
        ):
            return e
        e = e.__cause__
    return None


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename and not isinstance(e, DataError):
        return (
            f"{e.strerror}: {e.filename}. Fix: choose a folder that you can create and write to "
            "(e.g. --trainer.logger.init_args.save_dir), and check that no file stands in its path."
        )
    return str(e)


if __name__ == "__main__":
    cli_main()
