"""The command line run as a user runs it (a subprocess, this checkout first on the path), and the arguments most
tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

# The CLI on small synthetic MNIST files in ./data, without progress bar or summary: the arguments most tests share
SYNTHETIC = ["--data", "MNISTDataModule", "--data.data_dir", "data", "--data.download", "false"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
FIT = ["fit", *SYNTHETIC, *QUIET, "--trainer.max_epochs", "1", "--test_after_fit", "false"]


def run_command(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python ARGS` in `cwd` as a user runs it, this checkout first on the path; FASHION_LAB_DEBUG only if given."""
    base = {k: v for k, v in os.environ.items() if k != "FASHION_LAB_DEBUG"}
    env = {**base, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_cli(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """`python -m fashion_lab.cli ARGS` in `cwd`, as a user runs it."""
    return run_command(["-m", "fashion_lab.cli", *args], cwd, timeout, **env)
