"""The core installs beside anything: the model, the data modules, the callbacks and the CLI import no optional extra
(studies: optuna, scipy; app: gradio; onnx), the studies say which extra they need, and the core's declared
dependencies resolve beside lightning-hydra-template's `optuna<3` (its hydra-optuna-sweeper)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.commands import run_command
from tests.helpers.paths import REPO

EXTRAS = ("optuna", "scipy", "gradio", "onnx", "onnxscript", "onnxruntime")
# Makes the extras unimportable in the child, as on a machine where only `pip install fashion_lab` ran. Not scipy:
# torchmetrics imports it whenever its distribution is installed, so a missing scipy cannot be faked by an import hook.
BLOCK = "import sys; sys.modules.update(dict.fromkeys(('optuna', 'gradio', 'onnx', 'onnxscript', 'onnxruntime')))"
# Records the fashion_lab modules that import an extra themselves (the frame that runs the import statement)
IMPORTERS = f"""
import sys
class Importers:
    found = set()
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {EXTRAS!r}:
            frame = sys._getframe(1)
            while frame.f_code.co_filename.startswith('<frozen'):
                frame = frame.f_back
            if frame.f_globals.get('__name__', '').startswith('fashion_lab'):
                self.found.add(frame.f_globals['__name__'] + ' imports ' + name)
        return None
sys.meta_path.insert(0, Importers())
"""


def test_core_imports_no_extra(tmp_path: Path) -> None:
    code = (
        f"{BLOCK}\n{IMPORTERS}\nimport fashion_lab, fashion_lab.cli, fashion_lab.callbacks\n"
        "fashion_lab.MLPClassifier, fashion_lab.FashionMNISTDataModule, fashion_lab.TensorBoardFigures\n"
        "print(sorted(Importers.found), sorted(m for m in sys.modules if m.startswith('fashion_lab.studies')))"
    )
    result = run_command(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[] []"


def test_the_import_check_sees_an_extra() -> None:
    """The check above can fail: the studies' modules do import optuna and scipy."""
    code = f"{IMPORTERS}\nimport fashion_lab.studies.command, fashion_lab.studies.stats\nprint(sorted(Importers.found))"
    result = run_command(["-c", code], REPO)
    assert "fashion_lab.studies.definition imports optuna" in result.stdout


def test_cli_runs_without_the_extras(tmp_path: Path) -> None:
    code = f"{BLOCK}\nfrom fashion_lab.cli import cli_main\ncli_main(['fit', '--print_config'])"
    result = run_command(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: fashion_lab.FashionMNISTDataModule" in result.stdout


@pytest.mark.parametrize("missing", ["optuna", "scipy"])
def test_studies_without_their_extra_say_how_to_install_it(tmp_path: Path, missing: str) -> None:
    block = f"import sys, runpy; sys.modules[{missing!r}] = None"
    code = f"{block}; runpy.run_module('fashion_lab.studies', run_name='__main__')"
    result = run_command(["-c", code, "loss"], tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {missing} is not installed: the studies need Optuna and SciPy, an optional extra. "
        "Fix: pip install -e '.[studies]' (or pip install 'fashion_lab[studies]').\n"
    )


def core_dependencies() -> list[str]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads pyproject.toml")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


def test_core_dependencies_name_no_extra() -> None:
    names = {dep.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in core_dependencies()}
    assert names >= {"torch", "lightning", "torchmetrics", "jsonargparse"}
    assert not names & set(EXTRAS)


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_core_resolves_beside_optuna_below_3() -> None:
    """pip's resolver on the core's declared dependencies and the template's `optuna<3`: `pip install fashion_lab -r
    requirements.txt` in a lightning-hydra-template project."""
    if pip("index", "versions", "optuna").returncode != 0:
        pytest.skip("no package index reachable: pip's resolver needs one to read the dependencies' metadata")
    result = pip(
        "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-", *core_dependencies(), "optuna<3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    versions = {
        item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(result.stdout)["install"]
    }
    assert int(versions["optuna"].split(".")[0]) < 3
    assert {"torch", "lightning", "torchmetrics"} <= versions.keys()
