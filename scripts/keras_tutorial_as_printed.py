"""Real Keras running the tutorial's two programs verbatim on real Fashion-MNIST: the reference numbers in
tests/fixtures/keras_tutorial_runs.json, which reports/seed_study.md sets beside fashion_lab's.

Needs TensorFlow, which fashion_lab never depends on: run it in its own venv, e.g.
    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu==2.15.1   # tf.keras 2.15 (Keras 2)
    python -m venv /tmp/k3 && /tmp/k3/bin/pip install tensorflow-cpu==2.21.0   # Keras 3.15
    for s in 0 1 2; do for loss in sce mse; do
        /tmp/tf/bin/python scripts/keras_tutorial_as_printed.py $loss $s runs/k2_${loss}_$s.json; done; done
    python scripts/keras_tutorial_as_printed.py --collect runs/*.json    # any Python: writes the fixture

LOSS is sce (the first program), mse (the second: loss='mse' on the integer labels; Keras 3 refuses it with
"Dimensions must be equal, but are 60 and 10", which is recorded) or mse_y2d (y[:, None], what tf.keras 2 did).
The committed fixture holds 17 such runs (Keras 3.15.1 / TF 2.21.0 and tf.keras 2.15.0 / TF 2.15.1, seeds 0-2 and one
unseeded each, ~25 s a run on 2 CPU cores), made by a fuller version of this script that also kept logit statistics
(mean max |logit|, E[sum p^2], the cross-entropy clipped probabilities would give), which the fixture keeps.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = "/usr/share/datasets/fashion-mnist/"  # Debian's dataset-fashion-mnist: the bytes Keras' load_data reads
PAIRS = {"tshirt_to_shirt": (0, 6), "shirt_to_tshirt": (6, 0), "shirt_to_pullover": (6, 2), "coat_to_pullover": (4, 2)}
FIXTURE = "tests/fixtures/keras_tutorial_runs.json"


def idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(ROOT + name, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """tf.keras.datasets.fashion_mnist.load_data(), from the local files."""
    x_train, x_test = (idx(f"{n}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) for n in ("train", "t10k"))
    y_train, y_test = (idx(f"{n}-labels-idx1-ubyte.gz", 8) for n in ("train", "t10k"))
    return (x_train, y_train), (x_test, y_test)


def run(loss_kind: str, seed: int | None) -> dict:
    """The tutorial's program; what `fit` and `evaluate` did, on the unscaled and the scaled test images."""
    import keras as keras_package
    import tensorflow as tf

    keras = tf.keras
    if seed is not None:
        keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_data()
    x_train_n, x_test_n = x_train / 255.0, x_test / 255.0  # the tutorial's "Feature Engineering"
    model = keras.models.Sequential([
        keras.layers.Flatten(input_shape=(28, 28)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy" if loss_kind == "sce" else "mse",
                  metrics=["accuracy"])  # fmt: skip
    y_fit, y_eval = (y[:, None] for y in (y_train, y_test)) if loss_kind == "mse_y2d" else (y_train, y_test)
    out = {"tf": tf.__version__, "keras": keras_package.__version__, "loss": loss_kind, "seed": seed}
    try:
        model.fit(x_train_n, y_fit, epochs=5, validation_split=0.2, steps_per_epoch=800, verbose=0)
    except Exception as e:  # the tutorial's MSE program under Keras 3
        return out | {"fit_error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    out["optimizer_iterations"] = int(model.optimizer.iterations.numpy())
    out["evaluate_unscaled"] = [float(v) for v in model.evaluate(x_test, y_eval, verbose=0)]  # the tutorial's call
    out["evaluate_scaled"] = [float(v) for v in model.evaluate(x_test_n, y_eval, verbose=0)]
    for name, x in (("unscaled", x_test), ("scaled", x_test_n)):
        pred = model.predict(x, verbose=0).argmax(1)
        out[f"confusion_{name}"] = {k: int(((y_test == a) & (pred == b)).sum()) for k, (a, b) in PAIRS.items()}
    return out


def collect(paths: list[str]) -> None:
    """Write the fixture from single runs' JSON files."""
    runs = [json.loads(Path(p).read_text()) for p in sorted(paths)]
    printed = {"sce": [54.680458068847656, 0.8521999716758728], "mse": [27.61042594909668, 0.10019999742507935]}
    counts = {"tshirt_to_shirt": 110, "shirt_to_tshirt": 117, "shirt_to_pullover": 152, "coat_to_pullover": 154}
    fixture = {"tutorial_printed": printed | {"confusion_scaled_as_printed": counts}, "runs": runs}
    with open(FIXTURE, "w") as f:
        json.dump(fixture, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1] == "--collect":
        collect(sys.argv[2:])
    else:
        loss, seed, path = sys.argv[1], sys.argv[2], sys.argv[3]
        result = run(loss, None if seed == "none" else int(seed))
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps(result))
