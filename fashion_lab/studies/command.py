"""`python -m fashion_lab.studies NAME ...` (also `fashion-lab-study NAME ...`): its options, and the run of one
study by this process and the worker processes it starts."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import fashion_lab.studies
from fashion_lab.cli.user_errors import exit_on_user_error
from fashion_lab.studies.definition import StudyDefinition
from fashion_lab.studies.experiments import GRIDS, SEARCH, STUDIES
from fashion_lab.studies.results import summary, write_config
from fashion_lab.studies.storage import create_or_check, load, open_storage
from fashion_lab.studies.workers import quiet_libraries, validate_fit_args, work

DEFAULT_STORAGE = "sqlite:///lightning_logs/studies.db"  # beside the runs


DEFAULT_SEEDS, DEFAULT_TRIALS, DEFAULT_HEARTBEAT = 5, 60, 10


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one `error:` line and status 2."""

    def error(self, message: str) -> None:  # one line, as fashion-lab's own errors (argparse prints the usage too)
        self.exit(2, f"error: {message}. See: {self.prog} --help\n")


def positive(text: str) -> int:
    """argparse type: an integer >= 1 (seeds, workers, trials, threads, heartbeat seconds)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The study's own options; everything else is kept in `fit_args` for every fit."""
    parser = Parser(
        prog="fashion-lab-study",
        description=fashion_lab.studies.__doc__.splitlines()[0],
        epilog="Arguments it does not know go to every fit, e.g. --trainer.max_epochs 1 (see fashion-lab fit --help).",
        allow_abbrev=False,  # --work must not become --workers, nor --data.x become --data
    )
    parser.add_argument("name", choices=STUDIES, metavar="NAME", help=f"the study: {', '.join(STUDIES)}")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="an Optuna RDB URL (default: %(default)s)")
    parser.add_argument("--workers", type=positive, default=1, help="worker processes on this machine")
    parser.add_argument(
        "--seeds", type=positive, help=f"grid studies: seeds 0..N-1 per variant (default {DEFAULT_SEEDS})"
    )
    parser.add_argument("--trials", type=positive, help=f"search: trials in all (default {DEFAULT_TRIALS})")
    parser.add_argument("--data", default="FashionMNISTDataModule", help="the data module (K49DataModule, ...)")
    parser.add_argument("--threads", type=positive, help="torch threads per worker (default: CPU cores / workers)")
    parser.add_argument("--heartbeat", type=positive, default=DEFAULT_HEARTBEAT, help="seconds between heartbeats")
    parser.add_argument("--write-config", type=Path, metavar="PATH", help="search: write the best trial's config")
    args, args.fit_args = parser.parse_known_args(argv)
    if args.name in GRIDS and args.trials is not None:
        parser.error(f"--trials is for the search; {args.name!r} is a grid over variants × --seeds")
    if args.name == SEARCH and args.seeds is not None:
        parser.error("--seeds is for grid studies; every search trial uses seed 42")
    if args.write_config and args.name != SEARCH:
        parser.error("--write-config writes the search's best trial")
    args.seeds = args.seeds or DEFAULT_SEEDS
    args.trials = args.trials or DEFAULT_TRIALS
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    return args


def join(workers: list[BaseProcess]) -> list[str]:
    """Wait for the spawned workers; the ones that ended with an error, as "worker 1 (exit code 1)"."""
    for worker in workers:
        worker.join()
    return [f"worker {k} (exit code {w.exitcode})" for k, w in enumerate(workers, start=1) if w.exitcode]


def main(argv: list[str] | None = None) -> int:
    """`python -m fashion_lab.studies NAME ...`; returns the exit status (1 with one `error:` line when a variant
    or worker failed). A mistake exits as every command's does (`exit_on_user_error`): one `error:` line, status 1."""
    args = parse(argv)
    quiet_libraries()
    try:
        storage = open_storage(args.storage, args.heartbeat)
        if args.write_config:
            confirm = write_config(storage, args, args.write_config)
            print(f"Wrote {args.write_config}. Confirm it over 3 fresh seeds: {confirm}")
            return 0
        spec = StudyDefinition.new(args.name, args.data, args.fit_args, args.seeds)
        study = create_or_check(storage, spec, validate=validate_fit_args)
        start = time.perf_counter()
        # this process is worker 0; the others are spawned: fresh interpreters (forking one that holds torch
        # threads is unsafe), each paying the imports once
        context = multiprocessing.get_context("spawn")
        others = [context.Process(target=work, args=(args, f"[worker {k}] ")) for k in range(1, args.workers)]
        for worker in others:
            worker.start()
        work(args, "[worker 0] " if others else "")
        stopped = join(others)
        study, spec = load(storage, study.study_name)
        lines, error = summary(study, spec)
        print(f"{study.study_name} ({time.perf_counter() - start:.0f} s):", *lines, sep="\n  ")
        if stopped:  # its trial, if it had one, goes stale and is run again by whoever works on the study next
            crash = f"{', '.join(stopped)} stopped with an error (printed above); fix it and run the same command again"
            error = f"{error}; {crash}" if error else crash
    except (KeyboardInterrupt, SystemExit):  # Ctrl+C; in a fit, Lightning shuts down and exits
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a StudyError is a user's mistake: one line, exit 1; anything else keeps its traceback
        exit_on_user_error(e)
        raise
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
