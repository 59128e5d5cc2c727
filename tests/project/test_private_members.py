"""The framework internals fashion_lab relies on, checked so that an upgrade that changes them fails here first:
Lightning 2.6.6 (one private attribute, and the order of LightningCLI's constructor), torch 2.14's SummaryWriter (one
private method) and Optuna 5.0.0 (none)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from torch.utils.tensorboard.summary import text

import fashion_lab
from fashion_lab.cli.signals import slurm_requeues


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
    """TensorBoardFigures._write encodes its PNG itself and hands it to SummaryWriter._get_file_writer(), as
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
    package = Path(fashion_lab.__file__).parent
    studies = "\n".join(p.read_text() for p in (package / "studies").glob("*.py"))
    assert not re.search(r"\._storage\b|\._trial_id\b", studies)
    cli = "\n".join(p.read_text() for p in (package / "cli").glob("*.py"))
    assert not re.search(r"def _parse_ckpt_path|def _run_subcommand|_subcommand_parsers|self\._get\(", cli)
    assert cli.count("._accelerator_connector") == 1  # slurm_requeues, tested above
