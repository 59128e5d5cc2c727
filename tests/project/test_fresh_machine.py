"""The README's two commands for a fresh machine: what CI runs is the README's test line, and the script both call
installs what it says, as root or through sudo, and explains itself where it cannot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

SCRIPT = REPO / "scripts" / "system-packages.sh"


def readme_command(marker: str) -> str:
    """The one line of the ```bash block under README.md's `<!-- marker -->`."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)```", readme, re.S).group(1)
    assert block.count("\n") == 1, f"the {marker} block must be one line a person can paste"
    return block.strip()


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_ci_runs_the_readme_test_command() -> None:
    printed = run(["bash", str(REPO / ".ci" / "run"), "--print"])
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == readme_command("test-command") + "\n"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'bash -euo pipefail -c "$command"' in ci  # it runs what it prints, not a copy of the steps
    assert ci.index('-c "$command"') < ci.index("ruff check .") < ci.index("ruff format --check .")


def test_the_two_commands_install_the_same_way() -> None:
    """Both lines: the system packages first (the tests' superset), the same venv (the one .ci/run lints from)."""
    fit, tests = readme_command("fit-command"), readme_command("test-command")
    venv = "python3 -m venv .venv && . .venv/bin/activate && pip install -e "
    assert fit == f"bash scripts/system-packages.sh && {venv}. && python -m fashion_lab.cli fit"
    assert tests == f'bash scripts/system-packages.sh --tests && {venv}".[dev,studies,app,onnx]" && python -m pytest'
    assert ". .venv/bin/activate" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ";" not in fit + tests  # a failed step stops the line instead of running on without the data set


def test_unknown_option_is_refused() -> None:
    result = run(["bash", str(SCRIPT), "--test"])
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown option '--test'. Fix: run it as 'bash scripts/system-packages.sh' or with --tests.\n"
    )


def tools_without(tmp_path: Path, *missing: str) -> str:
    """A PATH holding what the script calls except `missing`: a machine without apt-get (macOS) or without sudo."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("id", "dpkg-query", "grep", "apt-get", "sudo", "env"):
        found = shutil.which(tool)
        if tool not in missing and found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_without_apt_get_it_says_what_to_do_and_lets_the_line_go_on(tmp_path: Path) -> None:
    result = run([shutil.which("bash"), str(SCRIPT), "--tests"], PATH=tools_without(tmp_path, "apt-get"))
    assert result.returncode == 0  # pip install and fit still run: fit downloads the data set and checks its md5
    assert result.stderr.startswith(
        "no apt-get here: install dataset-fashion-mnist fonts-ipafont-gothic python3-venv postgresql chromium "
        "chromium-driver (or their equivalents) with your system's package manager;"
    )
    assert "fit downloads Fashion-MNIST into data/ and checks its md5" in result.stderr


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="Debian's apt-get only")
def test_the_test_command_installed_every_system_package() -> None:
    """What `bash scripts/system-packages.sh --tests` installs is all there, so nothing is skipped for its lack."""
    result = run(["bash", str(SCRIPT), "--tests"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "system packages: all installed (dataset-fashion-mnist fonts-ipafont-gothic python3-venv postgresql "
        "chromium chromium-driver)\n"
    )
