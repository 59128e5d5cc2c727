"""What makes a study the same study: a grid (variants × seeds) or a search, stored with the study as plain JSON and
checked when a worker joins or a study resumes.

Each kind knows its own sampler, pruner, queue of first trials, and what one of its trials runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from fashion_lab.studies.experiments import BALANCED, GRIDS, SEARCH_START, search_space


def study_name(name: str, data: str) -> str:
    """The study's name in the storage: one per question and data set, e.g. "loss-fashionmnist", "search-k49"."""
    return f"{name}-{data.rsplit('.', 1)[-1].removesuffix('DataModule').lower()}"


def metric(data: str) -> str:
    """The study's score: accuracy, or balanced accuracy for imbalanced classes."""
    return "balanced_acc" if data.rsplit(".", 1)[-1] in BALANCED else "acc"


@dataclass(frozen=True)
class StudyDefinition:
    """A study's definition. Field names are the keys stored in the study's "definition" user attribute.

    Args:
        study: the question's name (a key of GRIDS, or "search").
        data: the data module, as given to --data.
        fit_args: the user's arguments given to every fit.
        metric: the score: "acc", or "balanced_acc" for imbalanced classes.
    """

    study: str
    data: str
    fit_args: list[str]
    metric: str

    @staticmethod
    def new(name: str, data: str, fit_args: list[str], seeds: int) -> StudyDefinition:
        """The definition that a command line asks for (as it reads back from the storage: tuples become lists)."""
        spec = {"study": name, "data": data, "fit_args": fit_args, "metric": metric(data)}
        if name in GRIDS:
            spec |= {"variants": GRIDS[name], "seeds": seeds}
        return StudyDefinition.from_dict(json.loads(json.dumps(spec)))

    @staticmethod
    def from_dict(stored: dict[str, Any]) -> StudyDefinition:
        """The definition stored with a study (a grid's has its variants and seeds)."""
        return GridStudy(**stored) if "variants" in stored else SearchStudy(**stored)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        """The study's name in the storage."""
        return study_name(self.study, self.data)


@dataclass(frozen=True)
class GridStudy(StudyDefinition):
    """Every variant at seeds 0..seeds-1, all queued when the study is made.

    Args:
        variants: variant name → its overrides of the seed's settings; the first is the seed's own network.
        seeds: seeds per variant.
    """

    variants: dict[str, dict[str, Any]]
    seeds: int

    def sampler(self) -> optuna.samplers.BaseSampler:
        # Grid trials are enqueued with fixed parameters, so their sampler never draws.
        return optuna.samplers.RandomSampler(seed=0)

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()  # every seed of every variant is a data point

    def budget(self, trials: int) -> int:
        """Trials in all: the grid's size (--trials is the search's)."""
        return len(self.variants) * self.seeds

    def queue(self, study: optuna.Study) -> None:
        """Seed-major, so an interrupted study has every variant at a few seeds."""
        for seed in range(self.seeds):
            for variant in self.variants:
                study.enqueue_trial({"variant": variant, "seed": seed})

    def plan(self, trial: optuna.Trial) -> tuple[dict[str, Any], list[str], str]:
        """The trial's overrides, its seed arguments and a label ("mse, one-hot targets, seed 3")."""
        variant = trial.suggest_categorical("variant", list(self.variants))
        seed = trial.suggest_categorical("seed", list(range(self.seeds)))
        # seed_everything draws the initial weights and dropout masks; data.seed each epoch's shuffle
        return (
            self.variants[variant],
            ["--seed_everything", str(seed), "--data.seed", str(seed)],
            f"{variant}, seed {seed}",
        )

    def checked_variants(self) -> dict[str, dict[str, Any]]:
        """The fits to build before the study starts, so that a mistake is found in any of them."""
        return self.variants

    def score(self, test: float, best_val: float) -> tuple[float, str]:
        """The trial's value and its part of the progress line: the test metric."""
        return test, f"test {self.metric} {test:.4f}"


@dataclass(frozen=True)
class SearchStudy(StudyDefinition):
    """TPE over search_space, starting from SEARCH_START; new trials are asked for until the budget is used."""

    def sampler(self) -> optuna.samplers.BaseSampler:
        # constant_liar: running trials count as bad guesses, so parallel workers do not all try the same region
        return optuna.samplers.TPESampler(multivariate=True, constant_liar=True, n_startup_trials=10)

    def pruner(self) -> optuna.pruners.BasePruner:
        """Stop a trial whose val metric is below the median of earlier trials at that epoch."""
        return optuna.pruners.MedianPruner(n_startup_trials=8, n_warmup_steps=5)

    def budget(self, trials: int) -> int:
        return trials

    def queue(self, study: optuna.Study) -> None:
        study.enqueue_trial(SEARCH_START)

    def plan(self, trial: optuna.Trial) -> tuple[dict[str, Any], list[str], str]:
        return search_space(trial), [], f"trial {trial.number}"

    def checked_variants(self) -> dict[str, dict[str, Any]]:
        return {"search": {}}

    def score(self, test: float, best_val: float) -> tuple[float, str]:
        """The best validation metric: the search selects on validation only (the test set is looked at, never
        chosen on)."""
        return best_val, f"best val {self.metric} {best_val:.4f}, test {test:.4f}"
