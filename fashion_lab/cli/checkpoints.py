"""Checkpoints on the command line: the callbacks that write them, `--ckpt_path` resolved into the run it belongs to,
the data module a checkpoint names, and the partial files a killed save leaves. Reading a checkpoint, and what it
holds, is `fashion_lab.checkpoints`."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from fashion_lab.checkpoints import CheckpointError, resolve

# the CLI's best-epoch checkpoint; dropped when there is no validation set to rank by
BEST = "epoch={epoch}-val_acc={val/acc:.4f}"


def checkpoint_callbacks() -> list[ModelCheckpoint]:
    """The best epoch by validation accuracy, and `last.ckpt` rewritten every epoch for `fit --ckpt_path last`.

    Two callbacks because Lightning 2.6 rewrites a `save_last` checkpoint only in epochs that also save a top-k one.
    """
    best = ModelCheckpoint(monitor="val/acc", mode="max", filename=BEST, auto_insert_metric_name=False)
    return [best, ModelCheckpoint(filename="last", enable_version_counter=False)]


def data_defaults(checkpoint: dict, path: str) -> dict[str, Any] | None:
    """The checkpoint's data module as a `--data` value (class and init args); None if it has none."""
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    class_path = data.pop("_class_path", None)  # LightningCLI saves it with the data module's init args
    data.pop("_instantiator", None)
    if class_path is None:  # not written by this CLI: the data module stays as given
        return None
    if not is_data_module(class_path):
        raise CheckpointError(
            f"checkpoint {path} names the data module {class_path!r}, which is not "
            "one of fashion_lab's; refused (a checkpoint never chooses code to import). "
            "Fix: use a checkpoint that fit wrote, or pass --data explicitly."
        )
    return {"class_path": class_path, "init_args": data}


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


def resolve_ckpt_path(config: Namespace, subcommand: str) -> None:
    """`last` = the newest run's last.ckpt in the logger's folder (`fashion_lab.checkpoints.resolve`). The
    checkpoint's run takes this command's output: a resumed fit and a test log into it (TensorBoard shows one run),
    and predict writes its CSV there (or to --output) without opening a run of its own."""
    args = tensorboard_args(config.trainer.logger)
    runs = Path(args.save_dir) / args.name if args is not None else Path("lightning_logs")
    config.ckpt_path = resolve(config.ckpt_path, runs)
    ckpt = Path(config.ckpt_path)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None
    if subcommand == "predict":  # Trainer(logger=False) writes to default_root_dir: no events file, no new run
        config.trainer.logger = False
        config.trainer.default_root_dir = config.output or config.trainer.default_root_dir or str(run or ckpt.parent)
    elif args is not None and run is not None and run.parent.resolve() == runs.resolve():
        args.version = run.name
    if subcommand == "fit":
        for stale in ckpt.parent.glob(".*.ckpt.*.part"):  # a save killed mid-write (SIGKILL, power loss)
            stale.unlink(missing_ok=True)


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The run's last.ckpt, relative to the current folder when inside it; None before the first one is saved."""
    dirs = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    path = next((Path(d, "last.ckpt") for d in dirs if Path(d, "last.ckpt").is_file()), None)
    if path is None:
        return None
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
