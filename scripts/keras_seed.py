"""The seed's own Keras program over several seeds: the reference for fashion_lab's seed-noise comparison.

    python -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install -q tensorflow-cpu==2.21.0 numpy
    /tmp/kerasenv/bin/python scripts/keras_seed.py --seeds 0 1 2 3 4

Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10, softmax), Adam, sparse categorical cross-entropy, x / 255,
`validation_split=0.2`, 5 epochs, batch 32, then `evaluate` on the test set (the seed normalises the test images too;
its `evaluate(x_test, ...)` on raw pixels is a slip). Reads Debian's dataset-fashion-mnist copy, as fashion_lab does,
so no download is needed. TensorFlow lives only in its own venv; it is never a dependency of fashion_lab.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
from pathlib import Path

import numpy as np

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def idx(name: str) -> np.ndarray:
    raw = gzip.decompress((DEBIAN / name).read_bytes())
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(-1, *[28] * (raw[3] - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    import keras  # here, not at the top: --help works without TensorFlow

    x_train, y_train = idx("train-images-idx3-ubyte.gz") / 255.0, idx("train-labels-idx1-ubyte.gz")
    x_test, y_test = idx("t10k-images-idx3-ubyte.gz") / 255.0, idx("t10k-labels-idx1-ubyte.gz")
    scores = []
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input((28, 28)),
                keras.layers.Flatten(),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=5, validation_split=0.2, verbose=0)
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        scores.append(acc)
        print(f"seed {seed}: test acc {acc:.4f}", flush=True)
    print(f"keras {keras.__version__}: {statistics.mean(scores):.4f} ± {statistics.stdev(scores):.4f} (mean ± sd)")


if __name__ == "__main__":
    main()
