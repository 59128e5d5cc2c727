"""Write reports/seed_study.md from the study storage: the seed tutorial's questions, answered over seeds.

    python scripts/reproduce_seed.py --workers 2         # run (or resume) the 4 grid studies, then the report
    python scripts/reproduce_seed.py --report-only       # the report from what the storage holds (runs nothing)
    python scripts/reproduce_seed.py --quick             # 2 seeds, 1 epoch on a fifth of the data: checks the pipeline

The studies are `python -m fashion_lab.studies NAME` (loss, activation, dropout, regularization, tutorial, search),
in the default storage lightning_logs/studies.db or --storage URL; K49 studies (`--data K49DataModule`) get their own
section.
The report's sections are built by fashion_lab/studies/report.py; this script only runs the studies and writes it.
Arguments this script does not know go to every fit of the studies it runs, e.g. --trainer.max_epochs 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import matplotlib

from fashion_lab.studies.command import DEFAULT_STORAGE, positive
from fashion_lab.studies.command import main as studies_main
from fashion_lab.studies.experiments import GRIDS
from fashion_lab.studies.report import SECTIONS, confusion_section, grid_section, header, k49_section, search_section
from fashion_lab.studies.storage import open_storage
from fashion_lab.studies.tutorial_report import tutorial_section
from fashion_lab.studies.workers import quiet_libraries

KERAS_RUNS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras_tutorial_runs.json"  # real Keras
QUICK_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "0.2"]  # --quick: 2 seeds of these


def run_studies(args: argparse.Namespace) -> None:
    """Run the grid studies into the storage (each resumes where it stopped)."""
    for name in GRIDS:
        seeds = ["--seeds", str(args.seeds)] if args.seeds else []
        argv = [name, "--storage", args.storage, "--workers", str(args.workers), "--data", args.data, *seeds]
        print(f"== python -m fashion_lab.studies {shlex.join(argv + args.fit_args)}", flush=True)
        if status := studies_main(argv + args.fit_args):
            sys.exit(status)


def main() -> None:
    """Run (or resume) the grid studies unless --report-only, then write the report and its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--storage", help=f"the studies' Optuna URL (default {DEFAULT_STORAGE})")
    parser.add_argument("--out", default="reports", help="folder for seed_study.md and its PNGs")
    parser.add_argument("--report-only", action="store_true", help="run no study: only write the report")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 1 epoch, 20%% of the batches, own storage")
    parser.add_argument("--workers", type=positive, default=1, help="worker processes of each study")
    parser.add_argument("--seeds", type=positive, help="seeds per variant (default 5)")
    parser.add_argument("--data", default="FashionMNISTDataModule", help="the data module of the studies run")
    args, args.fit_args = parser.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:  # its own storage: a quick run must never mix with the real studies
        args.storage = args.storage or f"sqlite:///{out / 'quick_studies.db'}"
        args.seeds = args.seeds or 2
        args.fit_args = [*QUICK_FIT, *args.fit_args]
    args.storage = args.storage or DEFAULT_STORAGE
    matplotlib.use("Agg")  # Optuna's plots use pyplot; no display here
    begin = time.perf_counter()
    if not args.report_only:
        run_studies(args)
    quiet_libraries()
    storage = open_storage(args.storage)
    report = header(args.storage) + tutorial_section(storage, KERAS_RUNS)
    report += confusion_section(storage, "FashionMNISTDataModule", out)
    for name, heading in SECTIONS.items():
        report += grid_section(storage, name, "FashionMNISTDataModule", out, f"## {heading}")
    report += search_section(storage, "FashionMNISTDataModule", out) + k49_section(storage, out)
    report.append(f"This run of scripts/reproduce_seed.py took {time.perf_counter() - begin:.0f} s.")
    (out / "seed_study.md").write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"Wrote {out / 'seed_study.md'} in {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
