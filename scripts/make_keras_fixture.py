"""Write tests/fixtures/keras_parity.npz: reference values from real Keras 3, for tests/keras/test_keras_parity.py.

Run it in its own virtual environment (TensorFlow is never a dependency of fashion_lab, never in the system Python):

    python -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install -q tensorflow-cpu==2.21.0 numpy
    /tmp/kerasenv/bin/python scripts/make_keras_fixture.py

Uses numpy and keras only (no torch, no fashion_lab), float32 throughout, fixed numpy seeds: a rerun writes the same
numbers. Keras kernels are stored in Keras' (in, out) layout; torch's nn.Linear is (out, in).

What Keras 3.15 does (read from keras/src/optimizers/*.py and schedules/learning_rate_schedule.py, TF backend):
- Adam (adam.py update_step): local_step = iterations + 1; alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t);
  m += (g - m) * (1 - beta_1); v += (g² - v) * (1 - beta_2); w -= m * alpha / (sqrt(v) + epsilon).
  epsilon is added to the *uncorrected* sqrt(v) (torch adds it to sqrt(v / (1 - beta_2**t))).
- AdamW = Adam with weight_decay=0.004 by default; the decay is base_optimizer._apply_weight_decay, see below.
- RMSprop (rmsprop.py): v = rho*v + (1 - rho)*g²; centered: a = rho*a + (1 - rho)*g, denominator = v - a² + epsilon,
  else denominator = v + epsilon (epsilon *inside* the sqrt); increment = lr * g / sqrt(denominator);
  momentum > 0: mom = momentum*mom + increment; w -= mom; else w -= increment.
- SGD (sgd.py): momentum != 0: m = m*momentum - g*lr; nesterov: w += m*momentum - g*lr; else w += m.
  momentum == 0: w -= g*lr.
- base_optimizer._backend_apply_gradients, per apply(): grads = _clip_gradients(grads), then _apply_weight_decay
  (w -= w * weight_decay * lr, lr = self.learning_rate, i.e. the schedule at the current step, applied *before*
  update_step and to every variable, biases included), then update_step(grad, var, self.learning_rate); at the
  end of apply() _iterations += 1.
- Clipping (_clip_gradients, only one allowed): clipnorm: each gradient g * clipnorm / max(||g||, clipnorm)
  (tf.clip_by_norm); global_clipnorm: all g * clip_norm * min(1/global_norm, 1/clip_norm), global_norm =
  sqrt(sum of all squared entries); clipvalue: clip(g, -v, v).
- gradient_accumulation_steps=k: update on apply calls where (_iterations + 1) % k == 0, with
  grads = (g + accumulated) / k (the mean of the k gradients), then clip, weight decay, update_step, reset; the other
  calls only add g to the accumulators (weights unchanged, no decay). self.learning_rate (the schedule) sees the
  real _iterations (every apply call counts); `self.iterations` (used by Adam's local_step = iterations + 1)
  is _iterations // k, so Adam's bias correction sees the number of real updates (1, 2, ...).
- Schedules, step = the optimizer's real _iterations before the update:
  ExponentialDecay: initial_learning_rate * decay_rate ** (step / decay_steps), floor(step / decay_steps) if staircase.
  PiecewiseConstantDecay: values[0] if step <= boundaries[0], values[i] if boundaries[i-1] < step <= boundaries[i],
  values[-1] if step > boundaries[-1].
  CosineDecay: without warmup_target: s = min(step, decay_steps); lr = initial * ((1 - alpha) * 0.5 * (1 +
  cos(pi * s / decay_steps)) + alpha). With warmup_target: s = min(step, decay_steps + warmup_steps); s <
  warmup_steps: (warmup_target - initial) * s / warmup_steps + initial; else cosine as above from warmup_target
  at s - warmup_steps: warmup_target * ((1 - alpha) * 0.5 * (1 + cos(pi * (s - warmup_steps) / decay_steps)) + alpha).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain kernels: no oneDNN reordering of float sums

import keras
import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras_parity.npz"
COMMAND = "/tmp/kerasenv/bin/python scripts/make_keras_fixture.py"

# The names of fashion_lab's tables (fashion_lab.keras.losses.LOSSES, fashion_lab.keras.layers.ACTIVATIONS /
# INITIALIZERS / CONSTRAINTS), written out here because this script must not import fashion_lab; the test checks they
# still agree.
LOSSES = [
    "cross_entropy",
    "categorical_cross_entropy",
    "mse",
    "mae",
    "kl_divergence",
    "categorical_hinge",
    "focal",
    "nll",
]
# fashion_lab name -> Keras activation string (the same words; Keras' "swish" is its silu)
ACTIVATIONS = {
    name: name
    for name in [
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "sigmoid",
        "tanh",
        "softplus",
        "softsign",
        "swish",
        "linear",
    ]
}
INITIALIZERS = [
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "orthogonal",
    "zeros",
    "ones",
]
CONSTRAINTS = {
    "max_norm": lambda: keras.constraints.MaxNorm(2.0),
    "non_neg": keras.constraints.NonNeg,
    "unit_norm": keras.constraints.UnitNorm,
    "min_max_norm": lambda: keras.constraints.MinMaxNorm(0.0, 1.0),
}

# case -> (optimizer, kwargs except learning_rate (Keras names), constant learning rate or None, schedule or None)
OPTIMIZER_CASES: dict[str, tuple[str, dict, float | None, dict | None]] = {
    "adam": ("adam", {}, 0.01, None),
    "adam_eps": ("adam", {"epsilon": 1e-3}, 0.01, None),
    "adam_clipnorm": ("adam", {"clipnorm": 0.1}, 0.01, None),
    "adam_global_clipnorm": ("adam", {"global_clipnorm": 0.1}, 0.01, None),
    "adam_clipvalue": ("adam", {"clipvalue": 0.01}, 0.01, None),
    "adam_accum3": ("adam", {"gradient_accumulation_steps": 3}, 0.01, None),
    "adam_cosine": (
        "adam",
        {},
        None,
        {
            "name": "cosine_decay",
            "kwargs": {
                "initial_learning_rate": 0.01,
                "decay_steps": 40,
                "alpha": 0.1,
                "warmup_target": 0.02,
                "warmup_steps": 10,
            },
        },
    ),
    "adamw": ("adamw", {}, 0.01, None),
    "adamw_exp": (
        "adamw",
        {"weight_decay": 0.1},
        None,
        {
            "name": "exponential_decay",
            "kwargs": {"initial_learning_rate": 0.01, "decay_steps": 10, "decay_rate": 0.5, "staircase": True},
        },
    ),
    "rmsprop": ("rmsprop", {}, 0.01, None),
    "rmsprop_momentum": ("rmsprop", {"momentum": 0.9, "epsilon": 1e-3}, 0.01, None),
    "rmsprop_centered": ("rmsprop", {"centered": True}, 0.01, None),
    "sgd": ("sgd", {}, 0.1, None),
    "sgd_nesterov_piecewise": (
        "sgd",
        {"momentum": 0.9, "nesterov": True},
        None,
        {"name": "piecewise_constant_decay", "kwargs": {"boundaries": [10, 30], "values": [0.1, 0.05, 0.01]}},
    ),
    "sgd_momentum_accum": (
        "sgd",
        {"momentum": 0.9, "global_clipnorm": 1.0, "gradient_accumulation_steps": 2, "weight_decay": 0.01},
        None,
        {"name": "exponential_decay", "kwargs": {"initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.8}},
    ),
}
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
SCHEDULES = {
    "cosine_decay": keras.optimizers.schedules.CosineDecay,
    "exponential_decay": keras.optimizers.schedules.ExponentialDecay,
    "piecewise_constant_decay": keras.optimizers.schedules.PiecewiseConstantDecay,
}
# Keras get_config entries that say nothing about the update rule
_NOT_HYPERPARAMETERS = {
    "name",
    "learning_rate",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
}


def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def losses(out: dict) -> None:
    rng = np.random.default_rng(0)
    logits = f32(rng.normal(size=(16, 10)) * 3)
    labels = rng.integers(0, 10, size=16).astype(np.int64)
    onehot = f32(np.eye(10)[labels])
    probs = keras.ops.softmax(logits, axis=-1)
    L = keras.losses
    values = {
        "cross_entropy": L.SparseCategoricalCrossentropy(from_logits=True)(labels, logits),
        "categorical_cross_entropy": L.CategoricalCrossentropy(from_logits=True)(onehot, logits),
        "mse": L.MeanSquaredError()(onehot, probs),
        "mae": L.MeanAbsoluteError()(onehot, probs),
        "kl_divergence": L.KLDivergence()(onehot, probs),
        "categorical_hinge": L.CategoricalHinge()(onehot, probs),
        "focal": L.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)(onehot, probs),
        "nll": L.SparseCategoricalCrossentropy(from_logits=True)(labels, logits),
        "cross_entropy_smooth0.1": L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(onehot, logits),
        # the seed's pitfall: the integer label (B, 1) broadcast against all C probabilities
        "mse_pitfall": L.MeanSquaredError()(f32(labels[:, None]), probs),
        "mae_pitfall": L.MeanAbsoluteError()(f32(labels[:, None]), probs),
    }
    assert set(LOSSES) <= set(values)
    out["loss/logits"], out["loss/labels"] = logits, labels
    for name, value in values.items():
        out[f"loss/{name}"] = f32(keras.ops.convert_to_numpy(value))


def activations(out: dict) -> None:
    x = f32(np.linspace(-6, 6, 101))
    out["act/x"] = x
    for name, keras_name in ACTIVATIONS.items():
        out[f"act/{name}"] = f32(keras.ops.convert_to_numpy(keras.activations.get(keras_name)(x)))
    out["act/keras_names"] = np.array(json.dumps(ACTIVATIONS))


def regularizers(out: dict) -> None:
    w = f32(np.random.default_rng(1).normal(size=(20, 7)))
    out["reg/w"] = w
    R = keras.regularizers
    for name, reg in {"l1": R.L1(0.01), "l2": R.L2(0.01), "l1_l2": R.L1L2(l1=0.01, l2=0.02)}.items():
        out[f"reg/{name}"] = f32(keras.ops.convert_to_numpy(reg(w)))


def constraints(out: dict) -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(size=(20, 7)) * 0.2  # Keras kernel (in=20, out=7): column norms ≈ 0.9
    w[:, 1] *= 10  # ≈ 9, above MaxNorm(2)
    w[:, 4] *= 3  # ≈ 2.7
    w[:, 6] *= 0.2  # ≈ 0.18, below UnitNorm's 1
    w = f32(w)
    out["con/w"] = w
    for name, make in CONSTRAINTS.items():
        out[f"con/{name}"] = f32(keras.ops.convert_to_numpy(make()(w)))


def initializers(out: dict) -> None:
    shape = (784, 128)  # Keras kernel (in, out): fan_in 784, fan_out 128
    fan_in, fan_out = shape
    for name in INITIALIZERS:
        init = keras.initializers.get(name)
        config = init.get_config()
        if "seed" in config:
            init = type(init).from_config({**config, "seed": 0})
        w = keras.ops.convert_to_numpy(init(shape, dtype="float32")).astype(np.float64)
        out[f"init/{name}"] = np.array([w.mean(), w.std(), w.min(), w.max()])
        # the bound |w| <= bound that Keras' distribution guarantees (inf: none)
        if isinstance(init, keras.initializers.VarianceScaling) and not isinstance(init, keras.initializers.Orthogonal):
            n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[init.mode]
            if init.distribution == "uniform":
                bound = math.sqrt(3.0 * init.scale / n)
            else:  # truncated_normal: stddev corrected by the std of a unit normal truncated at ±2, cut at 2·stddev
                bound = 2 * math.sqrt(init.scale / n) / 0.87962566103423978
        elif name == "random_uniform":
            bound = config["maxval"]
        elif name == "truncated_normal":
            bound = 2 * config["stddev"]
        elif name in ("zeros", "ones"):
            bound = float(name == "ones")
        else:
            bound = math.inf
        assert np.abs(w).max() <= bound * (1 + 1e-6), (name, np.abs(w).max(), bound)
        out[f"init/{name}/bound"] = np.array(bound)
        if name == "orthogonal":
            sv = np.linalg.svd(w, compute_uv=False)
            out["init/orthogonal/singular_values"] = np.array([sv.min(), sv.mean(), sv.max()])
            out["init/orthogonal/wtw_max_error"] = np.array(np.abs(w.T @ w - np.eye(shape[1])).max())


def optimizer_from_case(case: str) -> keras.optimizers.Optimizer:
    name, kwargs, lr, schedule = OPTIMIZER_CASES[case]
    if schedule is not None:
        lr = SCHEDULES[schedule["name"]](**schedule["kwargs"])
    return OPTIMIZERS[name](learning_rate=lr, **kwargs)


def optimizers(out: dict) -> dict:
    rng = np.random.default_rng(3)
    sizes = [(12, 16), (16, 5)]
    init = {}
    for i, (n_in, n_out) in enumerate(sizes):
        limit = math.sqrt(6 / (n_in + n_out))  # glorot uniform
        init[f"kernel_{i}"] = f32(rng.uniform(-limit, limit, size=(n_in, n_out)))
        init[f"bias_{i}"] = f32(rng.normal(size=n_out) * 0.1)
    x = f32(rng.normal(size=(50, 8, 12)))
    y = rng.integers(0, 5, size=(50, 8)).astype(np.int64)
    out["opt/x"], out["opt/y"] = x, y
    for key, value in init.items():
        out[f"opt/init/{key}"] = value
    order = ["kernel_0", "bias_0", "kernel_1", "bias_1"]  # = model.get_weights() order

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    summary = {}
    for case, (name, kwargs, lr, schedule) in OPTIMIZER_CASES.items():
        model.set_weights([init[k] for k in order])
        optimizer = optimizer_from_case(case)
        step_losses, lrs = [], []
        for step in range(len(x)):
            with tf.GradientTape() as tape:
                loss = loss_fn(y[step], model(x[step], training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            step_losses.append(float(loss))
            lrs.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))  # schedule(real _iterations)
            optimizer.apply(grads, model.trainable_variables)
        assert int(optimizer._iterations.numpy()) == len(x)
        out[f"opt/{case}/losses"] = f32(step_losses)
        out[f"opt/{case}/lrs"] = f32(lrs)
        for key, value in zip(order, model.get_weights(), strict=True):
            out[f"opt/{case}/final/{key}"] = f32(value)
        keras_config = {
            k: v for k, v in optimizer.get_config().items() if k not in _NOT_HYPERPARAMETERS and v is not None
        }
        config = {
            "optimizer": name,
            "kwargs": kwargs,
            "learning_rate": lr,
            "schedule": schedule,
            "keras_config": keras_config,  # every hyperparameter Keras resolved, defaults included
        }
        out[f"opt/{case}/config"] = np.array(json.dumps(config, sort_keys=True))
        summary[case] = (step_losses[0], step_losses[-1], lrs[0], lrs[-1])
    return summary


def main() -> None:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    out: dict[str, np.ndarray] = {
        "meta/keras_version": np.array(keras.__version__),
        "meta/tensorflow_version": np.array(tf.__version__),
        "meta/command": np.array(COMMAND),
    }
    losses(out)
    activations(out)
    regularizers(out)
    constraints(out)
    initializers(out)
    summary = optimizers(out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, python {sys.version.split()[0]}")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} arrays)")
    for name in [*LOSSES, "cross_entropy_smooth0.1", "mse_pitfall", "mae_pitfall"]:
        print(f"  loss/{name:26s} {float(out[f'loss/{name}']):.6f}")
    print(f"  {'optimizer case':24s} {'loss[0]':>9s} {'loss[49]':>9s} {'lr[0]':>9s} {'lr[49]':>9s}")
    for case, (first, last, lr0, lr49) in summary.items():
        print(f"  {case:24s} {first:9.5f} {last:9.5f} {lr0:9.5f} {lr49:9.5f}")


if __name__ == "__main__":
    main()
