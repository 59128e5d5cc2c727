"""Where the checkout, the tests' fixture files and Debian's real Fashion-MNIST are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist, installed by .ci/run
