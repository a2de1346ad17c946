"""Merging two LoRA task adapters on digits: each adapter alone, linear merge, task arithmetic, TIES.

The shared backbone is a small MLP (8x8x3 pixels -> 64 -> 64 ReLU -> 10 logits) trained on
digits-M (`keras_transfer.datasets.load_digits_m`, digits blended with colour photo patches).
The two tasks are clean digits (`load_digits(channels=3)`, the same stratified 75/25 split)
from two domains: task A the digits 0-4 as they are, task B the digits 5-9 turned upside down
(rotated 180 degrees, which the backbone does not recognise: its task B accuracy is near
chance). For each task one LoRA adapter (rank 4 on both
hidden layers, `recipes.add_adapters(kind="lora", trainable_layers=None)`: the pretrained
10-way head stays frozen and shared) trains with Adam (3e-3, batch 32) on that task's
training images only. A "joint LoRA" trains on both tasks' images: the multi-task reference.

Then `recipes.merge_adapters` folds both adapters into one plain model: "linear" (the mean of
the two task vectors), "task arithmetic" (their sum, lambda = 1) and "TIES" (density 0.2,
lambda = 1, the paper's defaults). No lambda is tuned on held-out data.

Reported on the test images, median [min, max] over seeds (seed = backbone init, split and
adapter init): accuracy on task A (argmax over the logits of 0-4, the per-task-head
convention of the merging papers), on task B (over 5-9), their mean, and the 10-way accuracy
on all test digits (one model serving both tasks with one head).

    python benchmarks/adapter_merging_digits.py [--quick] [--seeds 5] [--epochs 40]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections
import time

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

ROWS = ("backbone (no adapter)", "LoRA task A", "LoRA task B", "joint LoRA (A+B data)")
QUICK_ROWS = ROWS[:3]
MERGES = {
    "linear (mean)": ("linear", {}),
    "task arithmetic (λ 1)": ("task_arithmetic", {}),
    "TIES (k 0.2, λ 1)": ("ties", {"density": 0.2}),
}
COLUMNS = ("task A (0-4)", "task B (5-9)", "mean A, B", "all 10 digits")
TASKS = {"A": np.arange(0, 5), "B": np.arange(5, 10)}


def _flat(x):
    return (x.reshape(len(x), -1) / 255.0).astype("float32")


def _task_b_upside_down(x, y):
    x = x.copy()
    flip = np.isin(y, TASKS["B"])
    x[flip] = x[flip][:, ::-1, ::-1]
    return _flat(x)


def _data(seed):
    (xs, ys), _ = datasets.load_digits_m(image_size=8, seed=seed)
    (xt, yt), (xe, ye) = datasets.load_digits(image_size=8, channels=3, seed=seed)
    return (_flat(xs), ys), (_task_b_upside_down(xt, yt), yt), (_task_b_upside_down(xe, ye), ye)


def _backbone(x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((x.shape[1],), name="pixels")
    h = keras.layers.Dense(64, activation="relu", name="hidden1")(inputs)
    h = keras.layers.Dense(64, activation="relu", name="hidden2")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(h), name="mlp")
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def _lora(base, x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = recipes.add_adapters(base, "hidden\\d", kind="lora", rank=4, trainable_layers=None)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def _scores(model, x, y):
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    out = []
    for classes in TASKS.values():
        mask = np.isin(y, classes)
        picked = classes[np.argmax(logits[mask][:, classes], axis=1)]
        out.append(float(np.mean(picked == y[mask])))
    return out + [float(np.mean(out)), float(np.mean(np.argmax(logits, axis=1) == y))]


def _run_seed(seed, epochs, scores, quick):
    (xs, ys), (xt, yt), (xe, ye) = _data(seed)
    base = _backbone(xs, ys, epochs["backbone"], seed)
    adapters = {}
    for name, classes in TASKS.items():
        mask = np.isin(yt, classes)
        adapters[name] = _lora(base, xt[mask], yt[mask], epochs["adapter"], 100 * seed + ord(name))
    models = dict(zip(ROWS, (base, adapters["A"], adapters["B"])))
    if not quick:  # the multi-task reference: one adapter on both tasks' data
        models[ROWS[3]] = _lora(base, xt, yt, epochs["adapter"], 100 * seed + 1)
    vectors = [recipes.task_vector(base, adapters[name]) for name in TASKS]  # folded once, merged thrice
    for row, (method, options) in MERGES.items():
        models[row] = recipes.merge_adapters(base, vectors, method, **options)
    for row, model in models.items():
        for column, value in zip(COLUMNS, _scores(model, xe, ye)):
            scores[(row, column)].append(value)


def _summary(values):
    return f"{np.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, 2 epochs, no joint LoRA (the CI run)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the backbone and of each adapter")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epochs = {"backbone": 2 if args.quick else args.epochs, "adapter": 2 if args.quick else args.epochs}
    scores = collections.defaultdict(list)
    start = time.perf_counter()
    for seed in range(seeds):
        _run_seed(seed, epochs, scores, args.quick)
    rows = [
        [row] + [_summary(scores[(row, column)]) for column in COLUMNS]
        for row in (QUICK_ROWS if args.quick else ROWS) + tuple(MERGES)
    ]
    print(
        f"\nTwo LoRA adapters (digits 0-4; 5-9 upside down) on a digits-M MLP, {seeds} seed(s), "
        f"{epochs['adapter']} epochs; "
        f"median [min, max] test accuracy; {time.perf_counter() - start:.0f} s, keras {keras.__version__}"
    )
    _common.print_table(["model"] + list(COLUMNS), rows)
    return {key: float(np.median(values)) for key, values in scores.items()}


if __name__ == "__main__":
    main()
