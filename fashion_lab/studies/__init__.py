"""Studies on Optuna: the seed's questions as grids over seeds, and a TPE search for the best Dense-only network.

python -m fashion_lab.studies loss                        # 3 variants × 5 seeds, stored in lightning_logs/studies.db
python -m fashion_lab.studies activation --workers 2      # two worker processes share one study
python -m fashion_lab.studies search --trials 60 --storage postgresql+psycopg2://user:password@db-host/studies
python -m fashion_lab.studies loss --data K49DataModule   # the same question on Kuzushiji-49 (balanced accuracy)
python -m fashion_lab.studies search --write-config configs/search_best.yaml
python scripts/reproduce_seed.py                        # reports/seed_study.md from the storage

Each trial is one `fit` of fashion_lab.cli in a worker process, its TensorBoard run in lightning_logs/<study>/trial_N.
Arguments after NAME that this command does not know go to every fit, last: `--trainer.max_epochs 1`.
Workers on any number of machines share a study through its storage: each claims a waiting trial by switching it to
RUNNING (a row lock: never two workers on one trial), beats a heartbeat while it runs, and a trial whose heartbeat
stops (a killed worker) is failed and queued again by whichever worker notices first.

The parts: experiments (GRIDS, SEARCH_START, search_space), definition (GridStudy, SearchStudy: what makes a study
the same study), storage (opening it, creating or joining a study, claiming trials), workers (heartbeats, one trial's
fit, the worker loop), recorder (the Lightning callback each fit reports through), results (progress, summary, the
winner as a config), stats (mean ± sd, Welch's interval, verdicts), report (reports/seed_study.md's sections), and
command (`python -m fashion_lab.studies`).

Optuna and SciPy are the `studies` extra (`pip install -e '.[studies]'`): the model, the data modules, the callbacks
and the CLI never import them, so fashion_lab installs beside projects that pin another Optuna.
"""

from __future__ import annotations

import sys

EXTRA = ("optuna", "scipy")
FIX = "Fix: pip install -e '.[studies]' (or pip install 'fashion_lab[studies]')."


def main(argv: list[str] | None = None) -> int:
    """`python -m fashion_lab.studies` (and `fashion-lab-study`): the command, or one `error:` line when the studies
    extra is not installed."""
    try:
        import optuna  # noqa: F401
        import scipy  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in EXTRA:
            raise
        print(
            f"error: {e.name} is not installed: the studies need Optuna and SciPy, an optional extra. {FIX}",
            file=sys.stderr,
        )
        return 1
    from fashion_lab.studies.command import main as command

    return command(argv)
