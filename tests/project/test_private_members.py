"""The framework internals fashion_lab relies on, checked so that an upgrade that changes them fails here first:
Lightning 2.6.6 (the SLURM environment, TensorBoardLogger's version and file system, LightningCLI's constructor order
and the `_class_path` / `_instantiator` keys it saves in hparams, a callback hook set to None skipped), torch 2.14
(SummaryWriter's file writer, ReduceLROnPlateau's `_last_lr`) and Optuna 5.0.0 (none); and that
`LightningModule._trainer` is not used."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.tensorboard.summary import text

import fashion_lab
from fashion_lab import RunLogger
from fashion_lab.cli import cli_main
from fashion_lab.cli.checkpoints import data_defaults
from fashion_lab.cli.signals import slurm_requeues
from fashion_lab.keras.schedules import ReduceLROnPlateau

PACKAGE = Path(fashion_lab.__file__).parent


def test_slurm_requeue_reads_what_lightnings_signal_connector_reads(monkeypatch) -> None:
    """fashion_lab.cli.signals.slurm_requeues reads trainer._accelerator_connector.cluster_environment."""
    assert "self.trainer._accelerator_connector.cluster_environment" in inspect.getsource(_SignalConnector)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert isinstance(trainer._accelerator_connector.cluster_environment, ClusterEnvironment)
    assert not slurm_requeues(trainer)
    # inside a SLURM job (not interactive), Lightning picks SLURMEnvironment with auto-requeue on
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "fit")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    assert slurm_requeues(trainer)


def test_figures_write_where_summary_writers_add_image_writes(tmp_path: Path) -> None:
    """callbacks.figures.write_image encodes its PNG itself and hands it to SummaryWriter._get_file_writer(), as
    add_image does; after close() (the logger's finalize, at the end of fit) that call opens a new file."""
    from torch.utils.tensorboard import SummaryWriter

    assert "self._get_file_writer().add_summary(" in inspect.getsource(SummaryWriter.add_image)
    writer = SummaryWriter(tmp_path)
    writer.close()
    writer._get_file_writer().add_summary(text("tag", "written after close"), 1)
    writer.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2


def test_lightning_cli_parses_then_reads_the_checkpoint_then_runs_in_its_constructor() -> None:
    """FashionLabCLI resolves --ckpt_path in parse_arguments, before LightningCLI reads the model's settings from the
    file (only from a real path), and catches what the subcommand raises around LightningCLI.__init__."""
    source = inspect.getsource(LightningCLI.__init__)
    calls = ("self.parse_arguments(", "self._parse_ckpt_path()", "self._run_subcommand(")
    order = [source.index(call) for call in calls]
    assert order == sorted(order), order
    assert "Path(ckpt_path).is_file()" in inspect.getsource(LightningCLI._parse_ckpt_path)


def test_no_private_optuna_or_lightning_cli_members() -> None:
    """The studies use Optuna's public API only; the CLI overrides no private LightningCLI member."""
    studies = "\n".join(p.read_text() for p in (PACKAGE / "studies").glob("*.py"))
    assert not re.search(r"\._storage\b|\._trial_id\b", studies)
    cli = "\n".join(p.read_text() for p in (PACKAGE / "cli").glob("*.py"))
    assert not re.search(r"def _parse_ckpt_path|def _run_subcommand|_subcommand_parsers|self\._get\(", cli)
    assert cli.count("._accelerator_connector") == 1  # slurm_requeues, tested above


def test_run_logger_claims_its_folder_where_tensorboard_logger_picks_its_version(tmp_path: Path) -> None:
    """RunLogger overrides TensorBoardLogger._get_next_version, which `version` calls to pick N, and checks that
    `_fs` (fsspec) is local before it makes a folder."""
    assert "self._get_next_version()" in inspect.getsource(TensorBoardLogger.version.fget)
    assert isinstance(TensorBoardLogger(tmp_path)._fs, LocalFileSystem)
    (tmp_path / "runs" / "version_0").mkdir(parents=True)
    (tmp_path / "runs" / "version_1").mkdir()
    logger = RunLogger(tmp_path, name="runs")
    assert logger.version == 2 and (tmp_path / "runs" / "version_2").is_dir()  # claimed by os.mkdir


def test_reduce_on_plateau_reports_its_rate_through_last_lr() -> None:
    """fashion_lab's ReduceLROnPlateau.step sets torch's `_last_lr`, which get_last_lr() (and Lightning's
    LearningRateMonitor, through it) returns."""
    assert "return self._last_lr" in inspect.getsource(LRScheduler.get_last_lr)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    for loss in (1.0, 1.0):  # Keras: one epoch without improvement, with patience 1, reduces the rate
        scheduler.step(loss)
    assert scheduler.get_last_lr() == [0.05] == [optimizer.param_groups[0]["lr"]]


def test_lightning_cli_saves_the_data_modules_class_path_and_instantiator_in_hparams(tmp_path: Path) -> None:
    """LightningCLI (its _InstantiatorFn) keeps `_class_path` and `_instantiator` among a module's hparams; the CLI
    reads the data module's from a checkpoint (data_defaults) and the HPARAMS tab leaves both out."""
    cli = cli_main(["--data", "MNISTDataModule", "--data.data_dir", str(tmp_path)], run=False)
    hparams = dict(cli.datamodule.hparams)
    assert hparams["_class_path"] == "fashion_lab.MNISTDataModule"
    assert hparams["_instantiator"] == "lightning.pytorch.cli.instantiate_module"
    assert cli.model.hparams["_instantiator"] == "lightning.pytorch.cli.instantiate_module"
    data = data_defaults({"datamodule_hyper_parameters": hparams}, "x.ckpt")
    assert data["class_path"] == "fashion_lab.MNISTDataModule" and not {"_class_path", "_instantiator"} & set(data)


def test_no_lightning_module_trainer_attribute() -> None:
    """The model learns what it needs of the run in public hooks (`setup`), never through `self._trainer`."""
    sources = {p.name: p.read_text() for p in PACKAGE.rglob("*.py")}
    assert [name for name, text in sources.items() if "._trainer" in text] == []


def test_a_hook_set_to_none_is_not_called() -> None:
    """The package's callbacks set their per-step hooks to None (NoStepHooks): Lightning 2.6's _call_callback_hooks
    skips a hook that is not callable, so a fast-path fit makes no call into them per optimizer step."""
    from lightning.pytorch.trainer import call

    from fashion_lab import callbacks
    from fashion_lab.callbacks import WeightHistograms

    assert "if callable(fn):" in inspect.getsource(call._call_callback_hooks)
    classes = [cls for cls in vars(callbacks).values() if isinstance(cls, type) and issubclass(cls, L.Callback)]
    assert len(classes) == 7, classes  # one per module of fashion_lab/callbacks/ (test_layout)
    for cls in classes:
        assert cls.on_before_backward is cls.on_after_backward is cls.on_before_optimizer_step is None
    trainer = L.Trainer(callbacks=[WeightHistograms()], logger=False, enable_progress_bar=False)
    call._call_callback_hooks(trainer, "on_before_backward", None)  # would raise TypeError if it called None
