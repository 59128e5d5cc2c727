"""fashion_lab.studies: workers share a study without ever running a trial twice (SQLite, and a real PostgreSQL), a
killed study resumes, a search prunes through Lightning and writes its winner, K49 reports balanced accuracy, the
report is built from the storage, and every mistake is one `error:` line.

Tiny synthetic data and 1 epoch: a trial is deterministic per seed, so runs compare exactly (one torch thread each).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState

from fashion_lab import MLPClassifier
from fashion_lab.cli import make_cli
from fashion_lab.studies.command import join, main
from fashion_lab.studies.experiments import SEARCH_MAX_TIME, SEARCH_START
from fashion_lab.studies.recorder import TrialRecorder
from fashion_lab.studies.stats import verdict
from fashion_lab.studies.storage import open_storage
from tests.helpers import postgres
from tests.helpers.commands import run_command
from tests.helpers.hparams_events import hparams_tab
from tests.helpers.paths import REPO
from tests.helpers.trainer import make_trainer

# The loss grid at 2 seeds: 3 variants × 2 = 6 trials; --heartbeat 1: a dead worker's trial is stale after 3 s
LOSS = ["loss", "--seeds", "2", "--threads", "1", "--heartbeat", "1"]
ONE_EPOCH = ["--data.download", "false", "--trainer.max_epochs", "1"]
TWO_EPOCHS = ["--data.download", "false", "--trainer.max_epochs", "2"]


def study_cmd(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_command(["-m", "fashion_lab.studies", *args], cwd, timeout=300)


def trials(where: Path | str, name: str = "loss-fashionmnist") -> list[FrozenTrial]:
    """All trials of a study, from a work folder's default SQLite storage or a URL."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'lightning_logs' / 'studies.db'}"
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def results(found: list[FrozenTrial]) -> dict[tuple[str, int], tuple]:
    """(variant, seed) → (value, test loss, train and val loss curves) of the completed trials."""
    return {
        (t.params["variant"], t.params["seed"]): (
            t.value,
            t.user_attrs["test"]["loss"],
            t.user_attrs["curves"]["train/loss"],
            t.user_attrs["curves"]["val/loss"],
        )
        for t in found
        if t.state == TrialState.COMPLETE
    }


def assert_each_grid_point_done_once(found: list[FrozenTrial], seeds: int = 2) -> None:
    done = [(t.params["variant"], t.params["seed"]) for t in found if t.state == TrialState.COMPLETE]
    assert len(done) == len(set(done)) == 3 * seeds, done


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path, k49_dir: Path) -> Path:
    """One worker, one SQLite file: the loss grid, a 3-trial search (2 epochs each) and the loss grid on K49.

    Run in this process (`main` is the command's whole body): three fewer interpreters to start and import torch in.
    """
    folder = tmp_path_factory.mktemp("reference")
    runs = {
        "loss": [*LOSS, "--data.data_dir", str(fashion_dir), *ONE_EPOCH],
        "search": ["search", "--trials", "3", "--threads", "1", "--data.data_dir", str(fashion_dir), *TWO_EPOCHS],
        "k49": ["loss", "--seeds", "1", "--data", "K49DataModule", "--data.data_dir", str(k49_dir), *ONE_EPOCH],
    }
    cwd, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(folder)  # the study's default storage and runs: ./lightning_logs
    try:
        for name, args in runs.items():
            progress = io.StringIO()
            with contextlib.redirect_stdout(progress):
                assert main(args) == 0, progress.getvalue()[-3000:]
            (folder / f"{name}.out").write_text(progress.getvalue())
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)  # the study set 1 for its worker
    return folder


@pytest.mark.slow
def test_one_worker_runs_the_grid(reference: Path) -> None:
    found = trials(reference)
    assert_each_grid_point_done_once(found)
    assert len(found) == 6  # nothing but the grid
    by_variant = {v: value for (v, _), (value, *_) in results(found).items()}
    assert by_variant["mse, raw integer label (the pitfall)"] < 0.2 < 0.7 < by_variant["cross_entropy (seed)"]
    for t in found:
        run = reference / "lightning_logs" / "loss-fashionmnist" / f"trial_{t.number:04d}"
        assert list(run.glob("events.out.tfevents.*")) and (run / "config.yaml").is_file()
        assert t.user_attrs["command"].startswith("python -m fashion_lab.cli fit ")
        assert t.user_attrs["curves"]["epoch"] == [0] and t.intermediate_values == {0: t.user_attrs["best_val"]}
        assert sum(map(sum, t.user_attrs["confusion"])) == 200  # every synthetic test image, once
    progress = (reference / "loss.out").read_text()
    assert "loss-fashionmnist 6/6 done" in progress and "cross_entropy (seed)" in progress


@pytest.mark.slow
def test_trials_fill_tensorboards_hparams_tab_with_variant_and_seed(reference: Path) -> None:
    """Each trial's run (read with TensorBoard's hparams plugin data): its variant and seed beside the model's and
    data's hyperparameters, and metrics equal to what the study stored for it."""
    found = [t for t in trials(reference) if t.state == TrialState.COMPLETE]
    assert len(found) == 6
    for t in found:
        params, metrics = hparams_tab(reference / "lightning_logs" / "loss-fashionmnist" / f"trial_{t.number:04d}")
        assert (params["trial.variant"], params["trial.seed"], params["trial.number"]) == (
            t.params["variant"], t.params["seed"], t.number
        )  # fmt: skip
        assert params["model.loss"] == t.user_attrs["overrides"].get("model.loss", "cross_entropy")
        assert params["data.seed"] == t.params["seed"]
        assert metrics["hp/test_acc"] == pytest.approx(t.user_attrs["test"]["acc"])
        assert metrics["hp/test_loss"] == pytest.approx(t.user_attrs["test"]["loss"])
        assert metrics["hp/best_val_acc"] == pytest.approx(t.user_attrs["best_val"])
        assert metrics["hp/epochs"] == 1 and 0 < metrics["hp/seconds"] <= t.user_attrs["seconds"]


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(tmp_path: Path, fashion_dir: Path, reference: Path) -> None:
    result = study_cmd([*LOSS, "--workers", "2", "--data.data_dir", str(fashion_dir), *ONE_EPOCH], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = trials(tmp_path)
    assert_each_grid_point_done_once(found)
    # worker 1 ended well (else the exit status is 1, see below); whether it got a trial is timing: it needs ~5 s of
    # imports, in which worker 0 (this process, imports done) may finish all six 0.5 s trials
    assert len(found) == 6 and len({t.user_attrs["worker"] for t in found}) <= 2
    assert results(found) == results(trials(reference))


def test_a_worker_that_stops_with_an_error_is_named() -> None:
    """Real spawned processes, as the study starts them: the one that ended with an error is named, by number."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=sys.exit, args=(code,)) for code in (0, 3)]
    for worker in workers:
        worker.start()
    assert join(workers) == ["worker 2 (exit code 3)"]


@pytest.mark.slow
def test_postgresql_study(tmp_path: Path, fashion_dir: Path, reference: Path) -> None:
    bindir = postgres.binaries()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql (.ci/run does)")
    with postgres.server(bindir) as url:
        args = ["loss", "--seeds", "1", "--workers", "2", "--threads", "1", "--storage", url]
        result = study_cmd([*args, "--data.data_dir", str(fashion_dir), *ONE_EPOCH], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        found = trials(url)
    assert_each_grid_point_done_once(found, seeds=1)
    expected = {point: r for point, r in results(trials(reference)).items() if point[1] == 0}
    assert results(found) == expected  # the same fits as in SQLite: the storage changes nothing


@pytest.mark.slow
def test_killed_study_resumes(tmp_path: Path, fashion_dir: Path, reference: Path) -> None:
    command = [sys.executable, "-m", "fashion_lab.studies", *LOSS, "--data.data_dir", str(fashion_dir), *ONE_EPOCH]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = tmp_path / "lightning_logs" / "studies.db"
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        states = dict(read_states(database)) if database.exists() else {}
        running = [n for n, state in states.items() if state == "RUNNING"]
        # two trials done and a third mid-fit (its run folder exists once its heartbeat beats)
        started = running and (tmp_path / "lightning_logs" / "loss-fashionmnist" / f"trial_{running[0]:04d}").exists()
        if sum(s == "COMPLETE" for s in states.values()) >= 2 and started:
            proc.send_signal(signal.SIGKILL)
            killed = running[0]
    proc.wait(timeout=60)
    assert killed is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read()[-3000:]
    before = {t.number: (t.state, t.datetime_complete) for t in trials(tmp_path)}
    assert before[killed][0] == TrialState.RUNNING

    result = study_cmd([*LOSS, "--data.data_dir", str(fashion_dir), *ONE_EPOCH], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 re-run" in result.stdout
    found = trials(tmp_path)
    for t in found:  # what had finished is kept as it was, not run again
        if t.number in before and before[t.number][0] == TrialState.COMPLETE:
            assert (t.state, t.datetime_complete) == before[t.number]
    (retry,) = [t for t in found if t.system_attrs.get("failed_trial") == killed]
    assert found[killed].state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == found[killed].params
    assert_each_grid_point_done_once(found)
    assert results(found) == results(trials(reference))


def read_states(database: Path) -> list[tuple[int, str]]:
    """(trial number, state) straight from Optuna's SQLite tables, without holding a lock."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        try:
            return connection.execute("SELECT number, state FROM trials").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


@pytest.mark.slow
def test_search_keeps_the_dense_stack_and_writes_its_winner(reference: Path, fashion_dir: Path) -> None:
    found = trials(reference, "search-fashionmnist")
    assert len(found) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)
    assert found[0].params == SEARCH_START  # TPE starts from configs/best_mlp.yaml's network
    for t in found:  # only sizes and training change: Flatten → Dense… → Dense(C) whatever the trial
        overrides = t.user_attrs["overrides"]
        assert {k.split(".")[0] for k in overrides} <= {"model", "data", "trainer"}
        assert 1 <= len(overrides["model.hidden"]) <= 3 and all(isinstance(u, int) for u in overrides["model.hidden"])
        assert overrides["trainer.max_time"] == SEARCH_MAX_TIME
    best = max((t for t in found if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.value == max(v for v in best.user_attrs["curves"]["val/acc"])  # selected on validation

    config = reference / "configs" / "search_best.yaml"
    storage = f"sqlite:///{reference}/lightning_logs/studies.db"
    assert main(["search", "--storage", storage, "--write-config", str(config)]) == 0
    text = config.read_text(encoding="utf-8")
    assert f"trial {best.number}" in text and "--trainer.max_epochs 2" in text
    cli = make_cli(["--config", str(REPO / "configs" / "fashion_mnist.yaml"), "--config", str(config)], run=False)
    assert list(cli.model.hparams.hidden) == best.user_attrs["overrides"]["model.hidden"]
    assert (
        cli.datamodule.batch_size
        == best.params["batch_size"]
        == yaml.safe_load(text)["data"]["init_args"]["batch_size"]
    )


@pytest.mark.slow
def test_k49_study_reports_balanced_accuracy(reference: Path) -> None:
    found = trials(reference, "loss-k49")
    assert len(found) == 3 and all(t.state == TrialState.COMPLETE for t in found)
    for t in found:
        assert t.value == t.user_attrs["test"]["balanced_acc"]
        assert len(t.user_attrs["confusion"]) == 49
    assert found[0].intermediate_values == {0: found[0].user_attrs["curves"]["val/balanced_acc"][0]}  # reported


def test_a_trial_is_pruned_through_lightning(tmp_path: Path, fashion) -> None:
    """The recorder reports val/acc each epoch; a pruner that wants everything stopped ends the fit at epoch 0."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    trial = study.ask()
    recorder = TrialRecorder(trial)
    with pytest.raises(optuna.TrialPruned, match=r"val/acc .* at epoch 0"):
        make_trainer(tmp_path, max_epochs=3, callbacks=[recorder]).fit(MLPClassifier(), datamodule=fashion())
    assert list(study.trials[0].intermediate_values) == [0] and list(recorder.epochs) == [0]


def test_recorder_keeps_curves_confusion_and_weights(tmp_path: Path, fashion) -> None:
    recorder = TrialRecorder(optuna.create_study().ask())
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[recorder])
    model, dm = MLPClassifier(), fashion()
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    curves = recorder.curves()
    assert curves["epoch"] == [0, 1]
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert len(curves[key]) == 2 and None not in curves[key], key
    assert curves["train/loss"][1] < curves["train/loss"][0]  # it learns
    assert int(recorder.confmat.compute().sum()) == 200
    weights = recorder.weights()
    assert sum(weights["counts"]) == 784 * 128  # glorot_uniform's ±0.08 lies inside the histogram's ±0.3
    assert 0 <= weights["near_zero"] < 0.05


@pytest.mark.slow
def test_report_from_the_storage(reference: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{reference / 'lightning_logs' / 'studies.db'}"
    script = str(REPO / "scripts" / "reproduce_seed.py")
    result = run_command([script, "--report-only", "--storage", storage, "--out", str(tmp_path)], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "seed_study.md").read_text(encoding="utf-8")
    assert "| mse, raw integer label (the pitfall) | 2 | 0." in report and " ± " in report
    assert "mse, raw integer label (the pitfall) is " in report and "larger than seed noise" in report
    assert "Produced by `python -m fashion_lab.studies loss " in report
    assert "Not run yet: `python -m fashion_lab.studies activation`" in report
    assert "### K49: Q7 loss" in report and "test balanced_acc (mean ± sd)" in report
    assert "## Search: the best Dense-only network" in report and "| trial | val acc | test acc |" in report
    for png in ("confusion_matrix", "curves_loss-fashionmnist", "weights_loss-fashionmnist", "curves_loss-k49",
                "history_search-fashionmnist", "importances_search-fashionmnist"):  # fmt: skip
        assert (tmp_path / f"{png}.png").read_bytes()[:4] == b"\x89PNG", png


def storage_copy(reference: Path, tmp_path: Path) -> str:
    shutil.copy(reference / "lightning_logs" / "studies.db", tmp_path / "copy.db")
    return f"sqlite:///{tmp_path / 'copy.db'}"


@pytest.mark.parametrize(
    ("argv", "status", "expected"),
    [
        (["nosuch"], 2, "invalid choice: 'nosuch'"),
        (["loss", "--seeds", "0"], 2, "--seeds: must be a positive integer, got '0'"),
        (["loss", "--seeds", "-2"], 2, "must be a positive integer, got '-2'"),
        (["loss", "--workers", "0"], 2, "--workers: must be a positive integer"),
        (["search", "--trials", "-1"], 2, "--trials: must be a positive integer"),
        (["loss", "--trials", "3"], 2, "--trials is for the search"),
        (["loss", "--storage", "not a url"], 1, "is not a database URL"),
        (["loss", "--storage", "nosuchdb://x/y"], 1, "cannot open --storage"),
        (["loss", "--storage", "postgresql+psycopg2://nobody:secret@127.0.0.1:1/x"], 1, "cannot open --storage"),
        (["loss", "--storage", "GARBAGE"], 1, "cannot open --storage"),
        (["loss", "--seeds", "3", "--storage", "COPY"], 1, "seeds is 2 there, 3 here"),
    ],
)
def test_bad_input_is_one_error_line(
    argv: list[str], status: int, expected: str, tmp_path: Path, request: pytest.FixtureRequest, capsys
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    argv = list(argv)
    if "COPY" in argv:  # the reference study's storage (its fixture runs three studies: only when needed)
        argv[argv.index("COPY")] = storage_copy(request.getfixturevalue("reference"), tmp_path)
    argv = [f"sqlite:///{garbage}" if a == "GARBAGE" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage errors exit 2, the others as every command's
        main(argv)
    assert exit_info.value.code == status
    stderr = capsys.readouterr().err.strip().splitlines()
    # one line: a study's mistake names the option and the fix, so the debug hint does not follow it (as the CLI's)
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and expected in stderr[0], stderr
    assert "secret" not in stderr[0]  # a password never reaches the terminal


def test_storage_under_a_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A SQLite file whose folder would have to be made where a file stands: was a FileExistsError traceback."""
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["loss", "--storage", f"sqlite:///{tmp_path}/afile/x.db"])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot open --storage sqlite:///") and f"File exists: {tmp_path}/afile" in line
    assert "Fix: choose a path whose folders you can create, with no file standing in it." in line, line
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_a_bad_fit_argument_is_one_line_and_leaves_no_study(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(SystemExit) as exit_info:
        main(["dropout", "--storage", url, "--model.optimizer", "nadam", "--data.download", "false"])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: variant 'dropout 0.2 (seed)': ") and "nadam" in line, line
    assert optuna.get_all_study_names(open_storage(url)) == []


def test_verdict_counts_the_tables_comparisons() -> None:
    """Beyond noise at 95% alone is only a hint when the Bonferroni interval over the table's comparisons holds 0."""
    ref, better, far = [0.86, 0.87, 0.865], [0.88, 0.89, 0.885], [0.95, 0.951, 0.952]
    assert verdict("b", "a", ref, better) == (
        "b is 2.00 points better than a (95% interval +0.87 to +3.13): larger than seed noise."
    )
    hint = verdict("b", "a", ref, better, comparisons=10)
    assert "not once this table's 10 comparisons are counted (Bonferroni 99.5% interval -0.29 to +4.29)" in hint
    assert verdict("c", "a", ref, far, comparisons=10).endswith("also with this table's 10 comparisons counted.")
    assert verdict("d", "a", ref, [0.861, 0.871, 0.866], comparisons=10).endswith("within seed noise.")
