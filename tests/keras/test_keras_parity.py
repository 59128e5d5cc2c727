"""fashion_lab against real Keras: losses, activations, regularizers, constraints and initializers, checked by number.

The reference values come from Keras 3.15.1 (TensorFlow 2.21.0) and live in tests/fixtures/keras_parity.npz, written
by scripts/make_keras_fixture.py in its own virtual environment (TensorFlow is never a dependency here):

    python -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install -q tensorflow-cpu==2.21.0 numpy
    /tmp/kerasenv/bin/python scripts/make_keras_fixture.py

Keras kernels are (in, out), torch's nn.Linear weights (out, in): the constraint tests transpose. The optimizer cases
in the same fixture ("opt/...") are not tested here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashion_lab.keras.layers import ACTIVATIONS, CONSTRAINTS, INITIALIZERS, REGULARIZERS, regularization
from fashion_lab.keras.losses import LOSSES, Loss
from tests.helpers.keras_fixture import FIXTURE, KERAS, keras

TOL = {"rtol": 1e-5, "atol": 1e-5}

# Keras' regularizer objects in the fixture: L1(0.01), L2(0.01), L1L2(l1=0.01, l2=0.02) -> fashion_lab's (l1, l2)
REGULARIZER_STRENGTHS = {"l1": (0.01, 0.0), "l2": (0.0, 0.01), "l1_l2": (0.01, 0.02)}
INIT_SHAPE = (128, 784)  # torch (out, in) of the Keras kernel (784, 128) in the fixture


def _close(actual: torch.Tensor | np.ndarray, key: str) -> None:
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else actual
    np.testing.assert_allclose(actual, keras[key], **TOL, err_msg=f"{key} vs {KERAS}")


def test_fixture_is_the_documented_keras() -> None:
    assert str(keras["meta/keras_version"]) in __doc__, KERAS
    assert str(keras["meta/tensorflow_version"]) in __doc__, KERAS
    assert str(keras["meta/command"]) in __doc__
    assert FIXTURE.stat().st_size <= 1 << 20


@pytest.mark.parametrize(
    ("table", "prefix"),
    [(LOSSES, "loss"), (ACTIVATIONS, "act"), (REGULARIZERS, "reg"), (CONSTRAINTS, "con"), (INITIALIZERS, "init")],
    ids=["losses", "activations", "regularizers", "constraints", "initializers"],
)
def test_every_table_entry_has_a_keras_reference(table: dict, prefix: str) -> None:
    """A new name in a fashion_lab table fails here until scripts/make_keras_fixture.py computes it with Keras."""
    missing = [name for name in table if f"{prefix}/{name}" not in keras]
    assert not missing, f"no {KERAS} reference for {missing}: add them to scripts/make_keras_fixture.py"


def _logits_labels() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(keras["loss/logits"]), torch.from_numpy(keras["loss/labels"])


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_keras(name: str) -> None:
    _close(Loss(name)(*_logits_labels()), f"loss/{name}")


@pytest.mark.parametrize("name", ["cross_entropy", "categorical_cross_entropy"])
def test_label_smoothing_matches_keras(name: str) -> None:
    """Keras CategoricalCrossentropy(from_logits=True, label_smoothing=0.1) on one-hot targets."""
    _close(Loss(name, label_smoothing=0.1)(*_logits_labels()), "loss/cross_entropy_smooth0.1")


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_sparse_label_pitfall_matches_keras(name: str) -> None:
    """The seed's mistake: Keras' loss="mse" with integer labels broadcasts the (B, 1) label over all C classes."""
    _close(Loss(name, one_hot_targets=False)(*_logits_labels()), f"loss/{name}_pitfall")


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_keras(name: str) -> None:
    x = torch.from_numpy(keras["act/x"])
    with torch.no_grad():
        _close(ACTIVATIONS[name]()(x), f"act/{name}")


@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_regularizer_matches_keras(name: str) -> None:
    w = torch.from_numpy(keras["reg/w"].T.copy())  # a sum penalty does not care about the layout
    l1, l2 = REGULARIZER_STRENGTHS[name]
    _close(regularization(w, name, l1=l1, l2=l2), f"reg/{name}")


@pytest.mark.parametrize("name", list(CONSTRAINTS))
def test_constraint_matches_keras(name: str) -> None:
    """Keras applies the constraint to its (in, out) kernel with axis=0; fashion_lab to the (out, in) weight."""
    w = torch.from_numpy(keras["con/w"].T.copy())
    with torch.no_grad():
        CONSTRAINTS[name](w)  # in place
    _close(w.T, f"con/{name}")


def test_constraint_fixture_exercises_every_branch() -> None:
    norms = np.linalg.norm(keras["con/w"], axis=0)
    assert norms.max() > 2 and norms.min() < 1 and ((norms > 1) & (norms < 2)).any()
    assert (keras["con/w"] < 0).any()


def _initialized(name: str) -> np.ndarray:
    torch.manual_seed(0)
    w = torch.empty(INIT_SHAPE)
    INITIALIZERS[name](w)
    return w.double().numpy()


@pytest.mark.parametrize("name", list(INITIALIZERS))
def test_initializer_statistics_match_keras(name: str) -> None:
    """Same distribution, not the same numbers: mean, std, and the range of 100 352 values against Keras' own."""
    k_mean, k_std, k_min, k_max = keras[f"init/{name}"]
    bound = float(keras[f"init/{name}/bound"])  # |w| <= bound by Keras' distribution (inf: unbounded)
    w = _initialized(name)
    stats = (w.mean(), w.std(), w.min(), w.max())
    msg = f"{name}: fashion_lab mean/std/min/max {stats} vs {KERAS} {keras[f'init/{name}']}"
    assert abs(w.mean() - k_mean) <= min(0.005, 0.05 * k_std) + 1e-6, msg
    assert w.std() == pytest.approx(k_std, rel=0.03, abs=1e-6), msg
    if name in ("zeros", "ones"):
        assert w.min() == k_min and w.max() == k_max, msg
    elif np.isfinite(bound):  # uniform or truncated at 2σ: both reach close to the bound, neither past it
        assert np.abs(w).max() <= bound * (1 + 1e-6), msg
        assert -w.min() >= 0.97 * bound and w.max() >= 0.97 * bound, msg
        assert w.min() == pytest.approx(k_min, rel=0.03) and w.max() == pytest.approx(k_max, rel=0.03), msg
    else:  # normal and orthogonal tails: the extremes of 100 352 draws, about 4.4σ
        assert w.min() == pytest.approx(k_min, rel=0.25) and w.max() == pytest.approx(k_max, rel=0.25), msg


def test_truncated_normals_cut_at_two_sigma() -> None:
    """Keras' truncated normals (variance scaling and TruncatedNormal) drop everything beyond 2 stddev."""
    for name in ["glorot_normal", "he_normal", "lecun_normal", "truncated_normal"]:
        bound = float(keras[f"init/{name}/bound"])
        w = _initialized(name)
        assert np.abs(w).max() <= bound * (1 + 1e-6), name
        # a normal cut at ±2σ has std 0.8796σ (VarianceScaling divides its σ by 0.8796 first, TruncatedNormal not)
        assert w.std() == pytest.approx(0.87962566 * bound / 2, rel=0.03), name


def test_orthogonal_matches_keras() -> None:
    """Keras' (784, 128) kernel has orthonormal columns, W^T W = I; torch's (128, 784) weight orthonormal rows."""
    w = _initialized("orthogonal")
    sv = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose([sv.min(), sv.mean(), sv.max()], keras["init/orthogonal/singular_values"], atol=1e-5)
    assert np.abs(w @ w.T - np.eye(INIT_SHAPE[0])).max() < 1e-5 and keras["init/orthogonal/wtw_max_error"] < 1e-5
