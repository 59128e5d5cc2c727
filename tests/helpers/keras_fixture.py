"""tests/fixtures/keras_parity.npz: reference values computed by real Keras 3 (scripts/make_keras_fixture.py)."""

from __future__ import annotations

import numpy as np

from tests.helpers.paths import FIXTURES

FIXTURE = FIXTURES / "keras_parity.npz"
with np.load(FIXTURE) as _npz:
    keras: dict[str, np.ndarray] = dict(_npz)
KERAS = f"Keras {keras['meta/keras_version']} (TensorFlow {keras['meta/tensorflow_version']})"
