"""A study in its storage: opening Optuna's RDB storage, creating or joining a study by its definition, and claiming
a waiting trial so that no two workers, on any number of machines, run the same one.

Optuna's public API only: the storage object opened here is the one every worker uses (not the study's private
handle on it), and a trial's storage id is looked up by its number (not read from the trial's private attribute).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from fashion_lab.errors import ConfigError
from fashion_lab.studies.definition import GridStudy, StudyDefinition

MAX_RETRY = 3  # a trial whose worker died is queued again this many times at most


class StudyError(ConfigError):
    """A study cannot start: a bad option, an unusable storage, or a storage made by another definition."""


def open_storage(url: str, heartbeat: int | None = None) -> RDBStorage:
    """Optuna's RDB storage at `url` (heartbeat: seconds between a running trial's beats; stale after 3 missed).

    SQLite: pysqlite begins a transaction only at the first write, so two processes can both read a trial as WAITING
    and both claim it. BEGIN IMMEDIATE makes each Optuna session take the write lock first, as PostgreSQL's
    SELECT ... FOR UPDATE does.
    """
    from sqlalchemy import event, exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        dialect = parsed.get_backend_name()
    except exc.ArgumentError:
        raise StudyError(
            f"--storage {url!r} is not a database URL. Fix: sqlite:///path/studies.db, or "
            "postgresql+psycopg2://user:password@host/database"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    connect_args: dict[str, Any] = {}
    if dialect == "sqlite":
        connect_args = {"timeout": 60, "isolation_level": None}  # wait for the lock; no implicit BEGIN (see above)
        if parsed.database and parsed.database != ":memory:":
            make_folder(Path(parsed.database).parent, shown)
    elif dialect in ("postgresql", "mysql"):
        connect_args = {"connect_timeout": 10}  # an unreachable host fails in seconds, not minutes
    stale = {}
    if heartbeat is not None:
        stale = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat}
        stale["heartbeat_stale_trial_callback"] = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    try:
        storage = RDBStorage(url, engine_kwargs={"connect_args": connect_args}, **stale)
    except ImportError as e:
        raise StudyError(
            f"--storage {shown}: the {dialect} driver is not installed ({e.__cause__ or e}). "
            "Fix: pip install psycopg2-binary (PostgreSQL) or pymysql (MySQL)."
        ) from None
    except (exc.SQLAlchemyError, RuntimeError, ValueError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StudyError(
            f"cannot open --storage {shown}: {reason}. Fix: check that the server runs and the URL is right, "
            "or leave --storage out for the SQLite file in lightning_logs/."
        ) from None
    if dialect == "sqlite":
        event.listen(storage.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def make_folder(folder: Path, shown: str) -> None:
    """The SQLite file's folder, or a StudyError naming what stands in its way (a file, a missing permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudyError(
            f"cannot open --storage {shown}: {e.strerror}: {e.filename} (the database file's folder). "
            "Fix: choose a path whose folders you can create, with no file standing in it."
        ) from None


def load(storage: RDBStorage, name: str) -> tuple[optuna.Study, StudyDefinition]:
    """The study `name` and its definition; StudyError if it is missing or was not made by this package."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(
            f"no study {name!r} in the storage. Fix: run it first (python -m fashion_lab.studies ...)."
        ) from None
    spec = StudyDefinition.from_dict(wait_for_definition(study))
    return optuna.load_study(study_name=name, storage=storage, sampler=spec.sampler(), pruner=spec.pruner()), spec


def wait_for_definition(study: optuna.Study, timeout: float = 60.0) -> dict[str, Any]:
    """The definition that the study's creator stores once its grid is queued (another machine may be doing that)."""
    deadline = time.monotonic() + timeout
    while (spec := study.user_attrs.get("definition")) is None:
        if time.monotonic() > deadline:
            raise StudyError(
                f"study {study.study_name!r} exists but has no fashion_lab definition (made by another program, or "
                "its creator died before queueing its trials). Fix: choose another --storage, or delete it: "
                f"optuna delete-study --study-name {study.study_name} --storage URL"
            )
        time.sleep(1.0)
    return spec


def create_or_check(
    storage: RDBStorage, spec: StudyDefinition, validate: Callable[[StudyDefinition], None]
) -> optuna.Study:
    """Create the study (its first trials queued) or join the existing one if its definition is the same;
    `validate(spec)` runs before the study is made (workers.validate_fit_args builds every fit once)."""
    name = spec.name
    if name in optuna.get_all_study_names(storage):  # a mismatch is known before the slow check that follows
        check_same(name, wait_for_definition(optuna.load_study(study_name=name, storage=storage)), spec)
    validate(spec)
    try:  # the storage's unique study name makes exactly one process the creator
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        check_same(name, wait_for_definition(study), spec)
        return study
    spec.queue(study)
    study.set_user_attr("definition", spec.as_dict())  # last: it marks the study as ready for other workers
    return study


def check_same(name: str, stored: dict[str, Any], spec: StudyDefinition) -> None:
    """StudyError naming every option in which the stored definition differs from this command's."""
    wanted = spec.as_dict()
    differences = [
        f"{key} is {stored.get(key)!r} there, {value!r} here"
        for key, value in wanted.items()
        if stored.get(key) != value
    ]
    if differences:
        raise StudyError(
            f"study {name!r} in this storage was made by a different definition: {'; '.join(differences)}. "
            "Fix: run with the same options, or choose another --storage."
        )


def trial_id(storage: RDBStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial `number`, by Optuna's public storage API."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def claim(storage: RDBStorage, study: optuna.Study, spec: StudyDefinition, trials: int) -> optuna.Trial | None:
    """A waiting trial that this worker switched to RUNNING, else (a search under `trials`) a new one, else None."""
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        waiting_id = trial_id(storage, study, waiting.number)
        try:  # False or an error: another worker was first
            if storage.set_trial_state_values(waiting_id, TrialState.RUNNING):
                return optuna.Trial(study, waiting_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    if not isinstance(spec, GridStudy) and counted(study.get_trials(deepcopy=False)) < trials:
        return study.ask()  # two machines may both pass this check: a search can run a trial or two over budget
    return None


def requeue(storage: RDBStorage, study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail `trial` and queue it again (at most MAX_RETRY times), as for a worker that died."""
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(
        study, storage.get_trial(trial_id(storage, study, trial.number))
    )


def counted(trials: list[FrozenTrial]) -> int:
    """Trials that use up a budget: all but the failed ones that were queued again (their retry counts instead)."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(not (t.state == TrialState.FAIL and t.number in retried) for t in trials)
