"""A worker: claim a trial, fit it through fashion_lab.cli with a heartbeat beating, record what the report needs,
and go on until the study is done. Every mistake in the study's fit arguments is found before the first trial."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import optuna
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from fashion_lab.cli import make_cli, user_error_message
from fashion_lab.studies.definition import StudyDefinition, study_name
from fashion_lab.studies.experiments import as_args
from fashion_lab.studies.recorder import TrialRecorder, scores_from_test
from fashion_lab.studies.results import progress
from fashion_lab.studies.scaled_test import scaled_test
from fashion_lab.studies.storage import StudyError, claim, load, open_storage, requeue, trial_id

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit_args(spec: StudyDefinition, overrides: dict, extra: list[str]) -> list[str]:
    """A trial's `fit` command line: the study's data, its overrides, then the user's arguments, then `extra`."""
    return ["fit", *QUIET, "--data", spec.data, *as_args(overrides), *spec.fit_args, *extra]


def validate_fit_args(spec: StudyDefinition) -> None:
    """Parse and build every variant's fit (no training) and prepare the data once, so that a mistake is one line
    now, not a failed trial per variant later, and workers never download the same files at once."""
    variants = spec.checked_variants()
    for label, overrides in variants.items():
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cli = make_cli(fit_args(spec, overrides, [])[1:], run=False)  # no subcommand: build only
                if label == next(iter(variants)):
                    cli.datamodule.prepare_data()
        except SystemExit:  # jsonargparse printed usage, then "error: ..." over a few lines: keep those, as one
            text = stderr.getvalue()
            reason = " ".join(text[text.find("error:") + 6 :].split()) if "error:" in text else "bad fit arguments"
            raise StudyError(f"variant {label!r}: {reason}") from None
        except Exception as e:
            message = user_error_message(e)
            if message is None:
                raise
            raise StudyError(f"variant {label!r}: {message}") from None


@contextlib.contextmanager
def heartbeat(storage: RDBStorage, beating: int) -> Iterator[None]:
    """Beat trial `beating`'s heartbeat (its storage id) from a thread while it runs, so that if this process dies
    the trial goes stale.

    Enter it right after the claim: a RUNNING trial with no heartbeat at all never goes stale (Optuna skips it),
    so the first beat is taken before returning; only the instant between claim and first beat is unguarded.
    """
    storage.record_heartbeat(beating)
    stop = threading.Event()

    def beat() -> None:
        with contextlib.suppress(Exception):  # a lost connection: the trial goes stale and is re-run elsewhere
            while not stop.wait(storage.heartbeat_interval):
                storage.record_heartbeat(beating)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_trial(storage: RDBStorage, study: optuna.Study, trial: optuna.Trial, spec: StudyDefinition) -> str:
    """Fit, test and record one trial; returns its progress line."""
    overrides, seed_args, label = spec.plan(trial)
    run = f"{study.study_name}/trial_{trial.number:04d}"
    args = fit_args(spec, overrides, [*seed_args, "--trainer.logger.init_args.version", run])
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("command", shlex.join(["python", "-m", "fashion_lab.cli", *args]))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    log = Path("lightning_logs") / run / "fit.log"  # the fit's own output: the progress lines stay readable
    log.parent.mkdir(parents=True, exist_ok=True)
    recorder = TrialRecorder(trial, monitor=f"val/{spec.metric}")
    start = time.perf_counter()
    try:
        with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            cli = make_cli(args, callbacks=[recorder], hparams=trial_hparams(trial))
    except optuna.TrialPruned as e:
        trial.set_user_attr("curves", recorder.curves())
        study.tell(trial, state=TrialState.PRUNED)
        return f"{label}: pruned ({e})"
    except Exception as e:
        message = user_error_message(e) or bug_report(e, log)
        trial.set_user_attr("error", message)
        study.tell(trial, state=TrialState.FAIL)
        return f"{label}: failed: {message}"
    except BaseException:  # Ctrl+C (Lightning shuts down and exits): queue the trial again for the next run
        requeue(storage, study, trial)
        raise
    seconds = time.perf_counter() - start  # the whole fit and its test, as `fashion-lab fit` minus its imports
    return f"{label}: {record(study, trial, spec, cli.trainer, recorder, seconds)} in {seconds:.1f} s"


def trial_hparams(trial: optuna.Trial) -> dict:
    """The trial's columns in TensorBoard's HPARAMS tab: its number, and a grid trial's variant and seed (a search
    trial's sampled values are model.* and data.* columns already)."""
    return {"trial.number": trial.number} | {
        f"trial.{k}": trial.params[k] for k in ("variant", "seed") if k in trial.params
    }


def bug_report(e: Exception, log: Path) -> str:
    """Not a user's mistake: the traceback goes to the trial's log, the line names it."""
    with open(log, "a") as out:
        traceback.print_exc(file=out)
    return f"{type(e).__name__}: {e} (traceback in {log})"


def record(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: StudyDefinition,
    trainer: L.Trainer,
    recorder: TrialRecorder,
    seconds: float,
) -> str:
    """Store what the report needs, and tell the trial's value (the definition's score of it)."""
    scores = scores_from_test(trainer.callback_metrics)
    curves = recorder.curves()
    best_val = max((v for v in curves.get(f"val/{spec.metric}", []) if v is not None), default=float("nan"))
    attrs = {"test": scores, "curves": curves, "best_val": best_val, "seconds": seconds}
    attrs |= {"confusion": recorder.confmat.compute().tolist(), "weights": recorder.weights()}
    attrs |= scaled_test(trainer, recorder)  # the tutorial's unscaled test: also on x / 255
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    value, line = spec.score(scores[spec.metric], best_val)
    study.tell(trial, value)
    return line


def work(args: argparse.Namespace, tag: str = "") -> None:
    """A worker: claim a trial, run it, report progress; wait while other workers' trials run; stop when done."""
    quiet_libraries()
    torch.set_num_threads(args.threads)
    storage = open_storage(args.storage, args.heartbeat)
    study, spec = load(storage, study_name(args.name, args.data))
    total = spec.budget(args.trials)
    waiting_said = False
    while True:
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAIL, and queued again (MAX_RETRY times)
        trial = claim(storage, study, spec, total)
        if trial is not None:
            with heartbeat(storage, trial_id(storage, study, trial.number)):
                line = run_trial(storage, study, trial, spec)
            print(f"{tag}{progress(study, spec, total)} · {line}", flush=True)
            waiting_said = False
        elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not waiting_said:  # another worker's trial, or a dead one's that will go stale and come back
                print(f"{tag}{study.study_name}: waiting for running trials", flush=True)
                waiting_said = True
            time.sleep(min(args.heartbeat, 2))
        else:
            return


def quiet_libraries() -> None:
    """Only the progress lines: no Optuna trial logs, no Lightning banners, no experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # study.ask() warns that heartbeats are meant for Study.optimize: `heartbeat` here beats them for ask/tell
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
