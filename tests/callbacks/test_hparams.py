"""TensorBoard's HPARAMS tab: a fit's hyperparameters by the CLI's names, with its results as metrics, read back from
the event files with TensorBoard's own hparams plugin data; and the same served by a running TensorBoard."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from fashion_lab import MLPClassifier, TensorBoardHParams
from fashion_lab.callbacks import HP_METRICS
from fashion_lab.cli import cli_main
from fashion_lab.synthetic import write_idx_set
from tests.helpers.commands import QUIET, SYNTHETIC
from tests.helpers.hparams_events import hparams_tab


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, L.Trainer, float]:
    """A 2-epoch CLI fit with its test, on synthetic MNIST: (run folder, trainer, wall seconds of the command)."""
    folder = tmp_path_factory.mktemp("hparams_fit")
    write_idx_set(folder / "data", n_train=320, n_test=100)
    fit = ["fit", *SYNTHETIC, *QUIET, "--trainer.max_epochs", "2", "--model.dropout", "0.3", "--data.batch_size", "16"]
    data = [a if a != "data" else str(folder / "data") for a in fit]
    start = time.perf_counter()
    cli = cli_main([*data, "--trainer.logger.init_args.save_dir", str(folder)])
    return folder / "lightning_logs" / "version_0", cli.trainer, time.perf_counter() - start


def test_fit_logs_hyperparameters_with_its_results(fitted: tuple[Path, L.Trainer, float]) -> None:
    run, trainer, wall = fitted
    params, metrics = hparams_tab(run)
    assert params["model.dropout"] == pytest.approx(0.3) and params["data.batch_size"] == 16
    assert (
        params["model.optimizer"] == "adam" and params["model.hidden"] == "[128]" and params["model.num_classes"] == 10
    )
    assert not any(k.split(".")[0] not in ("model", "data") for k in params)  # flat, by the CLI's names only
    assert not [k for k in params if k.split(".")[1].startswith("_")]  # no jsonargparse `_class_path`, `_instantiator`
    assert set(metrics) == set(HP_METRICS)
    scores = trainer.callback_metrics  # the test from the best checkpoint ran last
    for name in ("acc", "loss", "balanced_acc"):
        assert metrics[f"hp/test_{name}"] == pytest.approx(float(scores[f"test/{name}"]))
    val = hparams_curve(run / "validation", "epoch_accuracy")  # the CLI's logger: Keras' layout
    assert len(val) == 2 and metrics["hp/best_val_acc"] == pytest.approx(max(val))
    assert metrics["hp/epochs"] == 2 and 0 < metrics["hp/seconds"] < wall


def hparams_curve(run: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return [s.value for s in events.Scalars(tag)]


def test_plain_trainer_fit_then_test(fashion, tmp_path: Path) -> None:
    """A library user: the callback with a TensorBoardLogger, fit and test called separately."""
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    trainer = L.Trainer(
        max_epochs=1, logger=logger, callbacks=[TensorBoardHParams({"note": "plain"})], enable_progress_bar=False
    )
    dm, model = fashion(batch_size=64), MLPClassifier(hidden=(32,))
    trainer.fit(model, datamodule=dm)
    (scores,) = trainer.test(model, datamodule=dm, verbose=False)
    params, metrics = hparams_tab(Path(logger.log_dir))
    assert params["note"] == "plain" and params["model.hidden"] == "(32,)" and params["data.val_split"] == 0.2
    assert metrics["hp/test_acc"] == pytest.approx(scores["test/acc"]) and metrics["hp/epochs"] == 1


def sessions(run: Path) -> int:
    """How many HPARAMS sessions the run's event files start (TensorBoard shows one per run folder)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return sum(
        value.tag == "_hparams_/session_start_info"
        for file in run.glob("events.out.tfevents.*")
        for event in EventFileLoader(str(file)).Load()
        for value in event.summary.value
    )


def test_a_resumed_fit_continues_its_runs_session(fashion, tmp_path: Path) -> None:
    """Interrupted after epoch 1, resumed into the same run: one session, whose results count both parts."""

    def trainer(epochs: int) -> L.Trainer:
        checkpoints = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", save_last=True)
        logger = TensorBoardLogger(tmp_path, version=0, default_hp_metric=False)
        callbacks = [TensorBoardHParams(), checkpoints]
        return L.Trainer(max_epochs=epochs, logger=logger, callbacks=callbacks, enable_progress_bar=False)

    dm = fashion(batch_size=64)
    first = trainer(1)
    first.fit(MLPClassifier(hidden=(32,)), datamodule=dm)
    run, last = Path(first.logger.log_dir), tmp_path / "ckpt" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("TensorBoardHParams")]
    assert state["best_val_acc"] == pytest.approx(hparams_curve(run, "val/acc")[0])
    # as if epoch 1 had been the best: the resumed run's best must still count it (the model logs `val/acc_best`
    # from its MaxMetric; the callback keeps its own best for a module that does not)
    state["best_val_acc"] = 0.999
    checkpoint["state_dict"]["val_acc_best.max_value"] = torch.tensor(0.999)
    torch.save(checkpoint, last)
    start = time.perf_counter()
    trainer(3).fit(MLPClassifier(hidden=(32,)), datamodule=dm, ckpt_path=last)
    resumed_wall = time.perf_counter() - start
    params, after = hparams_tab(run)
    assert sessions(run) == 1 and params["model.hidden"] == "(32,)"
    assert len(hparams_curve(run, "val/acc")) == 3 and after["hp/best_val_acc"] == pytest.approx(0.999)
    assert after["hp/epochs"] == 3 and after["hp/seconds"] > resumed_wall  # the first part's seconds count too


def test_two_instances_keep_two_states(fashion, tmp_path: Path) -> None:
    """The CLI's own and one a user adds with other columns: Lightning needs a state key for each."""
    callbacks = [TensorBoardHParams(), TensorBoardHParams({"note": "mine"})]
    trainer = L.Trainer(fast_dev_run=1, logger=False, callbacks=callbacks, enable_progress_bar=False)
    trainer.fit(MLPClassifier(), datamodule=fashion(batch_size=64))  # Lightning refuses two callbacks of one key
    assert len({cb.state_key for cb in trainer.callbacks if isinstance(cb, TensorBoardHParams)}) == 2


def test_without_tensorboard_it_does_nothing(fashion) -> None:
    trainer = L.Trainer(fast_dev_run=1, logger=False, callbacks=[TensorBoardHParams()], enable_progress_bar=False)
    trainer.fit(MLPClassifier(), datamodule=fashion(batch_size=64))
    assert trainer.state.finished


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> object:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_the_hparams_tab(fitted: tuple[Path, L.Trainer, float]) -> None:
    """A real TensorBoard on the run: its hparams plugin's HTTP API (what the HPARAMS tab's page asks for) returns
    the run's hyperparameters and metric values."""
    run, trainer, _ = fitted
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(run.parent), "--port", str(port)]
    server = subprocess.Popen([*cmd, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    try:
        experiment = None
        for _ in range(120):  # TensorBoard loads the event files in the background after it starts
            try:
                experiment = post(f"{base}/experiment", {"experimentName": ""})
                if experiment.get("metricInfos"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert {m["displayName"]: m["name"]["tag"] for m in experiment["metricInfos"]} == HP_METRICS
        assert any(h["name"] == "model.dropout" for h in experiment["hparamInfos"])
        groups = post(
            f"{base}/session_groups",
            {"startIndex": 0, "sliceSize": 10, "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
             "colParams": [{"metric": {"tag": tag}} for tag in HP_METRICS.values()]},
        )  # fmt: skip
        (group,) = groups["sessionGroups"]
        assert group["hparams"]["model.dropout"] == pytest.approx(0.3) and group["hparams"]["data.batch_size"] == 16
        values = {v["name"]["tag"]: v["value"] for v in group["metricValues"]}
        assert values[HP_METRICS["hp/test_acc"]] == pytest.approx(float(trainer.callback_metrics["test/acc"]))
        assert values[HP_METRICS["hp/epochs"]] == 2 and not math.isnan(values[HP_METRICS["hp/seconds"]])
    finally:
        server.terminate()
        server.wait(timeout=30)


class NoBest(MLPClassifier):
    """A module that does not log val/acc_best itself."""

    def _fitting(self) -> bool:
        return False


@pytest.mark.parametrize("module", [MLPClassifier, NoBest])
def test_one_val_acc_best_curve_whoever_logs_it(fashion, tmp_path: Path, module: type) -> None:
    logger = TensorBoardLogger(tmp_path, version=0, default_hp_metric=False)
    trainer = L.Trainer(max_epochs=3, logger=logger, callbacks=[TensorBoardHParams()], enable_progress_bar=False)
    trainer.fit(module(hidden=(32,)), datamodule=fashion(batch_size=64))
    accs, best = hparams_curve(Path(logger.log_dir), "val/acc"), hparams_curve(Path(logger.log_dir), "val/acc_best")
    assert best == pytest.approx([max(accs[: i + 1]) for i in range(3)])  # one value an epoch, not two
