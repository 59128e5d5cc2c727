"""A study's results as text: the completed trials per variant, the progress line, the final table, and the search's
winner as a config overlay."""

from __future__ import annotations

import argparse
import shlex
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from fashion_lab.studies.definition import GridStudy, StudyDefinition, study_name
from fashion_lab.studies.experiments import as_args
from fashion_lab.studies.stats import mean_sd
from fashion_lab.studies.storage import StudyError, load


def grid_results(study: optuna.Study, spec: GridStudy) -> dict[str, list[FrozenTrial]]:
    """Completed trials per variant, in the definition's order (the seed's first), sorted by seed."""
    results: dict[str, list[FrozenTrial]] = {variant: [] for variant in spec.variants}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        results[t.params["variant"]].append(t)
    return {variant: sorted(trials, key=lambda t: t.params["seed"]) for variant, trials in results.items()}


def progress(study: optuna.Study, spec: StudyDefinition, total: int) -> str:
    """ "loss-fashionmnist 7/15 done, 2 running, best cross_entropy (seed) 0.8650 ± 0.0031 (3)"."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    failed = sum(t.state == TrialState.FAIL and t.number not in retried for t in trials)
    line = f"{study.study_name} {done}/{total} done, {running} running"
    line += (f", {failed} failed" if failed else "") + (f", {len(retried)} re-run" if retried else "")
    if isinstance(spec, GridStudy):
        means = {v: [t.value for t in ts] for v, ts in grid_results(study, spec).items() if ts}
        if means:
            best = max(means, key=lambda v: statistics.fmean(means[v]))
            line += f", best {best} {mean_sd(means[best])} ({len(means[best])})"
    elif any(t.state == TrialState.COMPLETE for t in trials):
        line += f", best {study.best_value:.4f} (trial {study.best_trial.number})"
    return line


def summary(study: optuna.Study, spec: StudyDefinition) -> tuple[list[str], str | None]:
    """The final table printed after a run, and an error line if the study is not complete."""
    if not isinstance(spec, GridStudy):
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return [], f"study {study.study_name!r} has no completed trial (see each trial's fit.log)"
        best = study.best_trial
        test = best.user_attrs["test"][spec.metric]
        return [
            f"best: trial {best.number}, val {spec.metric} {best.value:.4f}, test {test:.4f}",
            shlex.join(as_args(best.user_attrs["overrides"])),
        ], None
    results = grid_results(study, spec)
    width = max(map(len, results))
    lines = [
        f"{variant:<{width}}  {mean_sd([t.value for t in ts]) if ts else '-'}  ({len(ts)} seeds)"
        for variant, ts in results.items()
    ]
    missing = sum(spec.seeds - len(ts) for ts in results.values())
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if "error" in t.user_attrs]
    if not missing:
        return lines, None
    first = f"; first: {failed[0].user_attrs['error']}" if failed else ""
    return lines, f"{missing} grid point(s) of {study.study_name!r} not done{first}"


def write_config(storage: RDBStorage, args: argparse.Namespace, path: Path) -> str:
    """Write the search's best trial as a config overlay (configs/search_best.yaml); returns the command that
    confirms it with three fresh fits."""
    import yaml

    study, spec = load(storage, study_name(args.name, args.data))
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        raise StudyError(f"study {study.study_name!r} has no completed trial yet. Fix: run it first.")
    best = study.best_trial
    config: dict[str, Any] = {"data": {"class_path": f"fashion_lab.{spec.data.rsplit('.', 1)[-1]}", "init_args": {}}}
    for key, value in best.user_attrs["overrides"].items():
        section, option = key.split(".", 1)
        (config["data"]["init_args"] if section == "data" else config.setdefault(section, {}))[option] = value
    test = best.user_attrs.get("test", {})
    header = (
        f"# The best of study {study.study_name!r} (trial {best.number}, python -m fashion_lab.studies {args.name}): "
        f"best val {spec.metric} {best.value:.4f}, test {spec.metric} "
        f"{test.get(spec.metric, float('nan')):.4f}, "
        f"{best.user_attrs.get('seconds', float('nan')):.0f} s for fit and test (imports not counted).\n"
        + (f"# The study also gave every fit: {shlex.join(spec.fit_args)}\n" if spec.fit_args else "")
        + "# Still Flatten → Dense… → Dense(C). Use with the seed config:\n"
        f"# python -m fashion_lab.cli fit --config configs/fashion_mnist.yaml --config {path}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # the search tuned at seed 42; other seeds, whole processes timed, tell whether it holds within the budget
    fit = f"python -m fashion_lab.cli fit --config configs/fashion_mnist.yaml --config {path}"
    return f"for s in 0 1 2; do /usr/bin/time -f '%e s' {fit} --seed_everything $s --data.seed $s; done"
