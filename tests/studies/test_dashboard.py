"""Optuna's dashboard (optuna-dashboard, from PyPI) reads fashion_lab's study storage: the committed SQLite file of
the seed study, and a PostgreSQL database, served on 127.0.0.1 and read back through the dashboard's own HTTP API."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import optuna
import pytest

from fashion_lab.studies.storage import open_storage
from tests.helpers import postgres
from tests.helpers.browser import free_port, get_json, serve
from tests.helpers.paths import REPO

STUDIES = REPO / "reports" / "studies.db"  # what `python scripts/reproduce_seed.py` wrote: 5 studies, 205 trials
DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"  # the console script, beside this Python


def served_trials(url: str, storage: str) -> dict[str, list[tuple]]:
    """Per study the dashboard lists: each trial's number, state, value and variant, read from its HTTP API."""
    port = free_port()
    command = [str(DASHBOARD), storage, "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    with serve(command, Path(url), port, "/api/studies") as api:
        studies = get_json(api)["study_summaries"]
        return {
            s["study_name"]: [
                (t["number"], t["state"], t["values"][0] if t["values"] else None, variant(t["params"]))
                for t in get_json(f"{api}/{s['study_id']}")["trials"]
            ]
            for s in studies
        }


def variant(params: list[dict]) -> str | None:
    return next((p["param_external_value"] for p in params if p["name"] == "variant"), None)


def stored_trials(storage: str) -> dict[str, list[tuple]]:
    """The same, read with Optuna from fashion_lab's own storage (study.open_storage)."""
    rdb = open_storage(storage)
    return {
        name: [
            (t.number, t.state.name.title(), t.value, t.params.get("variant"))
            for t in optuna.load_study(study_name=name, storage=rdb).get_trials()
        ]
        for name in optuna.get_all_study_names(rdb)
    }


@pytest.fixture(scope="module")
def studies_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("studies")
    shutil.copy(STUDIES, folder / "studies.db")
    return folder


def test_dashboard_serves_the_committed_sqlite_studies(studies_copy: Path) -> None:
    storage = f"sqlite:///{studies_copy / 'studies.db'}"
    before = (studies_copy / "studies.db").read_bytes()
    served = served_trials(str(studies_copy), storage)
    assert served == stored_trials(storage)
    assert set(served) >= {"loss-fashionmnist", "activation-fashionmnist", "regularization-fashionmnist"}
    assert len(served["loss-fashionmnist"]) == 15 and all(
        state == "Complete" for _, state, _, _ in served["loss-fashionmnist"]
    )
    seed = [value for _, _, value, v in served["loss-fashionmnist"] if v == "cross_entropy (seed)"]
    assert len(seed) == 5 and all(0.86 < value < 0.88 for value in seed)  # the README's 0.8668 ± 0.0025
    assert (studies_copy / "studies.db").read_bytes() == before  # reading the studies changes nothing


def test_dashboard_serves_a_postgresql_study(studies_copy: Path) -> None:
    bindir = postgres.binaries()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql (.ci/run does)")
    with postgres.server(bindir) as url:
        # fashion_lab's PostgreSQL storage (its schema, made by study.open_storage) holding the seed's loss study
        optuna.copy_study(
            from_study_name="loss-fashionmnist",
            from_storage=f"sqlite:///{studies_copy / 'studies.db'}",
            to_storage=open_storage(url),
        )
        served = served_trials(str(studies_copy), url)
        assert served == stored_trials(url)
    assert list(served) == ["loss-fashionmnist"] and len(served["loss-fashionmnist"]) == 15
