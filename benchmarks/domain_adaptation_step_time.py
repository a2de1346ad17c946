"""Training-step cost of DANN (and Deep CORAL) vs a source-only step, same CNN, same run.

Each model trains on one cached batch (the digits CNN of `domain_adaptation_digits.py`,
32 px RGB) by calling its compiled train function directly; the time per step is the
median over `--repeats` runs of `--steps` steps after tracing and a warm-up. Peers:

- Keras's own `train_step` on `keras.Sequential([feature_extractor, label_classifier])`;
- `SourceOnly` (our step, target batch ignored) at batch B;
- `DANN` / `DeepCORAL` with B source + B target examples per step.

DANN's step pushes 2B examples through the feature extractor, so the fair reference
for its extra cost is also given: source-only at batch 2B.

    python -m benchmarks.domain_adaptation_step_time [--quick] [--batch-size 64]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.domain_adaptation_digits import build_parts  # noqa: E402
from keras_transfer.models import DANN  # noqa: E402
from keras_transfer.models import DeepCORAL  # noqa: E402
from keras_transfer.models import SourceOnly  # noqa: E402


def _time_per_step(model, dataset, steps, repeats):
    """Median seconds per call of the compiled train function (no `fit` start-up cost)."""
    model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)  # builds and traces
    train_function = model.make_train_function()
    iterator = iter(dataset)
    train_function(iterator)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            logs = train_function(iterator)
        float(keras.ops.convert_to_numpy(logs["loss"]))
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.image_size, args.steps, args.repeats = 8, 16, 3, 2
    b, size = args.batch_size, args.image_size
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, size=(2 * b, size, size, 3)).astype("uint8")
    xt = rng.integers(0, 256, size=(b, size, size, 3)).astype("uint8")
    ys = rng.integers(0, 10, size=2 * b).astype("int64")

    def pairs(n):
        return tf.data.Dataset.from_tensors(((xs[:n], xt), ys[:n])).cache().repeat()

    def plain(n):
        return tf.data.Dataset.from_tensors((xs[:n], ys[:n])).cache().repeat()

    def sgd():
        return keras.optimizers.SGD(0.01, momentum=0.9)

    timings = {}
    fe, lc = build_parts(size, 0)
    keras_model = keras.Sequential([keras.Input((size, size, 3)), fe, lc])
    keras_model.compile(optimizer=sgd(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timings[f"Keras train_step, batch {b}"] = _time_per_step(keras_model, plain(b), args.steps, args.repeats)
    fe, lc = build_parts(size, 0)
    model = SourceOnly(fe, lc)
    model.compile(optimizer=sgd())
    timings[f"SourceOnly, batch {b}"] = _time_per_step(model, pairs(b), args.steps, args.repeats)
    fe, lc = build_parts(size, 0)
    model = SourceOnly(fe, lc)
    model.compile(optimizer=sgd())
    timings[f"SourceOnly, batch {2 * b}"] = _time_per_step(model, pairs(2 * b), args.steps, args.repeats)
    fe, lc = build_parts(size, 0)
    model = DANN(fe, lc)
    model.compile(optimizer=sgd())
    timings[f"DANN, {b} source + {b} target"] = _time_per_step(model, pairs(b), args.steps, args.repeats)
    fe, lc = build_parts(size, 0)
    model = DeepCORAL(fe, lc, coral_on="features")
    model.compile(optimizer=sgd())
    timings[f"DeepCORAL, {b} source + {b} target"] = _time_per_step(model, pairs(b), args.steps, args.repeats)

    base = timings[f"SourceOnly, batch {b}"]
    base2 = timings[f"SourceOnly, batch {2 * b}"]
    print(f"\nStep time, digits CNN at {size}px, median of {args.repeats} x {args.steps} steps\n")
    print("| step | ms / step | vs SourceOnly B | vs SourceOnly 2B |")
    print("| --- | --- | --- | --- |")
    for name, seconds in timings.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / base:.2f} | {seconds / base2:.2f} |")
    dann = timings[f"DANN, {b} source + {b} target"]
    return {
        "ms_per_step": {k: 1000 * v for k, v in timings.items()},
        "dann_vs_source_only": dann / base,
        "dann_vs_source_only_2b": dann / base2,
        "source_only_vs_keras": base / timings[f"Keras train_step, batch {b}"],
    }


if __name__ == "__main__":
    main(sys.argv[1:])
