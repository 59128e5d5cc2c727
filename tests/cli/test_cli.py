"""`python -m fashion_lab.cli`: configs, fit → test, predict CSV, resume, and a real-data run."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fashion_lab import MLPClassifier
from fashion_lab.cli import cli_main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import QUIET, SYNTHETIC, run_cli
from tests.helpers.paths import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SEED = REPO / "configs" / "fashion_mnist.yaml"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the current directory, with small synthetic MNIST files in data/."""
    write_idx_set(tmp_path / "data", n_train=250, n_test=60)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_parses(config: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(SEED), "--config", str(config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    overlay = yaml.safe_load(config.read_text())
    for key, value in overlay.get("model", {}).items():
        assert printed["model"][key] == value, key
    for key, value in overlay.get("trainer", {"max_epochs": 5}).items():
        if key == "callbacks":  # printed with every init arg: compare the classes and the overlay's own args
            for given, got in zip(value, printed["trainer"]["callbacks"], strict=True):
                assert got["class_path"] == given["class_path"]
                assert given["init_args"].items() <= got["init_args"].items()
        else:
            assert printed["trainer"][key] == value, key


def test_defaults_are_the_seed_config(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--print_config"])
    defaults = capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(SEED), "--print_config"])
    assert capsys.readouterr().out == defaults


def test_data_class_choice_links_num_classes(tmp_path: Path) -> None:
    cli = cli_main(["--data", "K49DataModule", "--data.data_dir", str(tmp_path)], run=False)
    assert cli.model.hparams.num_classes == 49 and cli.model.class_names[48] == "ゝ"
    assert sum(p.numel() for p in cli.model.parameters()) == 106_801


def test_fit_fast_dev_run(workdir: Path) -> None:
    cli = cli_main(["fit", *SYNTHETIC, "--trainer.fast_dev_run", "true", *QUIET])
    # one Lightning step = one execution of up to 32 mini-batches: all 200 training images, 7 optimizer steps
    assert cli.trainer.state.finished and cli.trainer.global_step == 7


def run_fit(*extra: str) -> None:
    cli_main(["fit", *SYNTHETIC, "--data.batch_size", "25", "--trainer.max_epochs", "2", *QUIET, *extra])


def test_fit_then_test_writes_run_folder(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    run_fit()
    out = capsys.readouterr().out
    assert "Test (checkpoint epoch=" in out and "balanced acc" in out
    run = workdir / "lightning_logs" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["class_path"] == "fashion_lab.MNISTDataModule" and saved["trainer"]["max_epochs"] == 2
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch=") for name in checkpoints)
    tags = set()
    for events in run.rglob("events.out.tfevents.*"):  # train/loss and val/acc in Keras' train and validation runs
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= {f"{events.parent.relative_to(run)}/{tag}" for tag in acc.Tags()["scalars"]}
    assert {"train/epoch_loss", "validation/epoch_accuracy", "./test/acc", "./test/balanced_acc"} <= tags


def test_no_test_after_fit(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    run_fit("--test_after_fit", "false")
    assert "Test (" not in capsys.readouterr().out


def test_predict_writes_csv(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    run_fit()
    ckpt = workdir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    cli_main(["predict", *SYNTHETIC, *QUIET, "--ckpt_path", str(ckpt)])
    out = capsys.readouterr().out
    assert "Predict: [" in out and "Actual:  [0, 1, 2, 3" in out
    # beside the checkpoint, in its own run: predict opens no run of its own
    assert sorted(p.name for p in (workdir / "lightning_logs").iterdir()) == ["version_0"]
    rows = list(csv.DictReader((workdir / "lightning_logs" / "version_0" / "predictions.csv").open()))
    assert len(rows) == 60 and list(rows[0])[:5] == ["index", "path", "pred", "pred_name", "prob"]
    assert list(rows[0])[5:] == ["pred2", "pred2_name", "prob2", "pred3", "pred3_name", "prob3", "true", "true_name"]
    assert float(rows[0]["prob"]) >= float(rows[0]["prob2"]) >= float(rows[0]["prob3"]) and rows[0]["path"] == ""
    assert [int(r["true"]) for r in rows[:12]] == [*range(10), 0, 1]  # synthetic labels cycle 0..9
    assert rows[3]["true_name"] == "3 - three" and 0.0 < float(rows[0]["prob"]) <= 1.0
    assert all(r["pred_name"] == f"{r['pred']} - " + r["pred_name"].split(" - ")[1] for r in rows)


def test_predict_output_folder(workdir: Path) -> None:
    run_fit("--trainer.max_epochs", "1", "--test_after_fit", "false")
    cli_main(["predict", *QUIET, "--ckpt_path", "last", "--output", "out"])
    assert sorted(p.name for p in (workdir / "out").iterdir()) == [
        "predictions.csv",
        "predictions.png",
    ]  # no config.yaml
    assert len((workdir / "out" / "predictions.csv").read_text().splitlines()) == 1 + 60
    assert sorted(p.name for p in (workdir / "lightning_logs").iterdir()) == ["version_0"]


@pytest.mark.slow
def test_checkpoint_brings_its_data(k49_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`predict` and `test --ckpt_path last` with no config after a K49 fit: the checkpoint's data module and settings
    (49 classes, its data_dir), outputs in the checkpoint's run, no new run folder; the command line still wins."""
    monkeypatch.chdir(tmp_path)
    k49 = ["--data", "K49DataModule", "--data.data_dir", str(k49_dir), "--data.download", "false"]
    cli_main(["fit", *k49, *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"])
    run = tmp_path / "lightning_logs" / "version_0"
    trained = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}

    cli = cli_main(["predict", "--ckpt_path", "last"])
    assert type(cli.datamodule).__name__ == "K49DataModule" and cli.datamodule.data_dir == k49_dir
    assert cli.datamodule.steps_per_execution == 32 and cli.model.hparams.num_classes == 49
    rows = list(csv.DictReader((run / "predictions.csv").open(encoding="utf-8")))
    assert len(rows) == 245 and {r["true_name"] for r in rows} == set(cli.datamodule.classes)  # 49 hiragana

    cli = cli_main(["test", "--ckpt_path", "last", "--data.eval_batch_size", "100"])  # the command line wins
    assert cli.datamodule.eval_batch_size == 100 and Path(cli.trainer.log_dir).resolve() == run
    assert cli.trainer.callback_metrics["test/acc"] > 0.1  # 49 classes: chance is 0.02
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]  # no new run folder
    for name, mtime in trained.items():  # the training run's config and hparams stay as fit wrote them
        assert (run / name).stat().st_mtime_ns == mtime, name
    tags = set()
    for events in run.rglob("events.out.tfevents.*"):  # val/acc in Keras' validation run
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= {f"{events.parent.relative_to(run)}/{tag}" for tag in acc.Tags()["scalars"] + acc.Tags()["images"]}
    assert {"validation/epoch_accuracy", "./test/acc", "./test/confusion_matrix", "./test/misclassified"} <= tags


def test_resume_from_last_continues_the_same_run(workdir: Path) -> None:
    run_fit("--trainer.max_epochs", "1")
    last = workdir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    cli = cli_main(
        [
            "fit",
            *SYNTHETIC,
            "--data.batch_size",
            "25",
            *QUIET,
            "--trainer.max_epochs",
            "3",
            "--ckpt_path",
            "last",
            "--test_after_fit",
            "false",
        ]
    )
    assert cli.trainer.current_epoch == 3 and cli.trainer.global_step == 3 * 8  # 200 train images / 25
    assert not (workdir / "lightning_logs" / "version_1").exists()  # the resumed run keeps its folder
    resumed = torch.load(last, weights_only=False)
    assert (resumed["epoch"], resumed["global_step"]) == (2, 24)


def test_resume_last_without_runs_fails_clearly(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *SYNTHETIC, "--ckpt_path", "last"])
    assert exit_info.value.code == 1
    assert "no lightning_logs/version_*/checkpoints/last.ckpt to resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.real_data
def test_real_one_epoch_fit_subprocess(tmp_path: Path) -> None:
    result = run_cli(["fit", "--trainer.max_epochs", "1", *QUIET], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Test ("))
    acc = float(line.split(" - acc ")[1].split()[0])
    assert acc >= 0.80, line
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("events.out.tfevents.*"))


def test_help_explains_every_option(capsys: pytest.CaptureFixture) -> None:
    """LightningCLI takes help text from the docstrings' `Args:`: every model and data option has a sentence."""
    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    text = capsys.readouterr().out
    blocks = {b.split()[0]: " ".join(b.split()) for b in text.split("\n  --")[1:]}
    model = {name: b for name, b in blocks.items() if name.startswith("model.")}
    linked = {"num_classes", "class_names"}  # given via data.num_classes / data.classes
    assert set(model) == {f"model.{a}" for a in inspect.signature(MLPClassifier).parameters} - {
        f"model.{a}" for a in linked
    }
    undocumented = [name for name, b in model.items() if b.split(maxsplit=2)[-1].startswith("(type")]
    assert undocumented == []
    assert "clip all gradients together to this L2 norm" in model["model.global_clipnorm"]
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "fashion_lab: the Keras Fashion-MNIST" in capsys.readouterr().out


@pytest.mark.parametrize(("option", "flushed"), [([], True), (["--flush_denormal", "false"], False)])
def test_flush_denormal_is_the_default_and_can_be_turned_off(option: list[str], flushed: bool) -> None:
    """Denormal floats go to zero as in TensorFlow's threads, unless --flush_denormal false keeps them."""
    try:
        cli_main([*option, *SYNTHETIC], run=False)  # parsed and built, nothing trained
        denormal = torch.tensor([1e-40]).mul(1.0).item()  # below float32's smallest normal, 1.18e-38
        assert (denormal == 0.0) is flushed, denormal
    finally:
        torch.set_flush_denormal(False)  # the process-wide default for the tests that follow


def test_a_plain_torch_file_is_one_error_line(tmp_path: Path) -> None:
    """`torch.save` of a dict is not a checkpoint: one line naming it, not Lightning's KeyError traceback."""
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.ckpt")
    result = run_cli(["predict", "--ckpt_path", "plain.ckpt", *SYNTHETIC], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.splitlines()[0] == (
        "error: checkpoint plain.ckpt holds no model weights and settings (not written by fit). "
        "Fix: pass a .ckpt that fit wrote (lightning_logs/version_N/checkpoints/)."
    )
