"""MAML sinusoid regression (Finn et al. 2017, §5.1) with keras_transfer.MetaModel.

Spec: 1-40-40-1 ReLU MLP, K=10 support + 10 query points per task, one inner step
alpha=0.01, meta-batch 25 tasks, Adam 1e-3, `--iterations` meta-iterations (paper: 70,000).
Evaluation: 600 new tasks, K=5 support points, 100 query points, MSE after 1 / 5 / 10 inner SGD
steps (alpha=0.01; Meta-SGD uses its learned rates), mean with a 95 % interval. Rows: MAML
(second order), first-order MAML, Meta-SGD (unconstrained rates, as in the paper, and clipped
to [0, 1] with `inner_rate_bounds`), and the pretrained baseline (one regressor trained
on points of random tasks, then fine-tuned the same way). Reference values from the paper
(Finn et al. 2017, sinusoid regression, K=5): MAML 0.67 / 0.38 / 0.35, pretrained 2.41 / 2.23 / 2.19.

    python benchmarks/meta_sinusoid.py [--quick] [--iterations 70000]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer.datasets import sinusoid_task_dataset  # noqa: E402
from keras_transfer.datasets import sinusoid_tasks  # noqa: E402
from keras_transfer.models import MetaModel  # noqa: E402

PAPER = {"MAML (paper)": (0.67, 0.38, 0.35), "pretrained (paper)": (2.41, 2.23, 2.19)}
EVAL_STEPS = (1, 5, 10)


def mlp():
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def meta_train(iterations, seed=0, steps_per_batch=50, **kwargs):
    keras.utils.set_random_seed(seed)
    steps_per_batch = min(steps_per_batch, iterations)
    meta = MetaModel(mlp(), inner_steps=1, inner_learning_rate=0.01, steps_per_batch=steps_per_batch, **kwargs)
    meta.compile(keras.optimizers.Adam(1e-3), loss="mse")
    data = sinusoid_task_dataset(25, 10, 10, seed=seed + 1).batch(steps_per_batch, drop_remainder=True)
    start = time.perf_counter()
    meta.fit(data, steps_per_epoch=max(1, iterations // steps_per_batch), epochs=1, verbose=0)
    return meta, time.perf_counter() - start


def pretrain(iterations, seed=0):
    """The baseline: one regressor on points pooled over random tasks (same data budget)."""
    keras.utils.set_random_seed(seed)
    net = mlp()
    net.compile(keras.optimizers.Adam(1e-3), loss="mse", steps_per_execution=100)
    data = sinusoid_task_dataset(25, 10, 10, seed=seed + 1).map(
        lambda x, qy: (tf.reshape(tf.concat([x[0], x[2]], 1), (-1, 1)), tf.reshape(tf.concat([x[1], qy], 1), (-1, 1)))
    )
    start = time.perf_counter()
    net.fit(data, steps_per_epoch=iterations, epochs=1, verbose=0)
    return MetaModel(net, inner_learning_rate=0.01), time.perf_counter() - start


def evaluate(meta, tasks):
    (sx, sy, qx), qy = tasks
    out = {}
    for steps in EVAL_STEPS:
        pred = meta.adapt_and_predict(sx, sy, qx, steps=steps).numpy().astype("float64")
        with np.errstate(over="ignore", invalid="ignore"):
            per_task = np.mean((pred - qy) ** 2, axis=(1, 2))
        if not np.all(np.isfinite(per_task)):  # e.g. Meta-SGD rates learned for 1 step, applied 10 times
            out[steps] = (float("inf"), float("nan"))
            continue
        out[steps] = (float(per_task.mean()), float(1.96 * per_task.std(ddof=1) / np.sqrt(len(per_task))))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--eval-tasks", type=int, default=None)
    parser.add_argument("--variants", default="maml,fomaml,metasgd,metasgd01,pretrained")
    args = parser.parse_args(argv)
    iterations = args.iterations or (200 if args.quick else 70000)
    eval_tasks = args.eval_tasks or (50 if args.quick else 600)
    tasks = sinusoid_tasks(eval_tasks, k_shot=5, k_query=100, seed=12345)
    variants = {
        "maml": ("MAML (second order)", dict()),
        "fomaml": ("first-order MAML", dict(first_order=True)),
        "metasgd": ("Meta-SGD", dict(learn_inner_rates="per_parameter")),
        "metasgd01": (
            "Meta-SGD, rates in [0, 1]",
            dict(learn_inner_rates="per_parameter", inner_rate_bounds=(0.0, 1.0)),
        ),
    }
    results, rows = {}, []
    for key in args.variants.split(","):
        if key == "pretrained":
            name, (model, seconds) = "pretrained + fine-tune", pretrain(iterations)
        else:
            name, kwargs = variants[key]
            model, seconds = meta_train(iterations, **kwargs)
            if model.inner_rates:
                low, high = model.inner_rate_bounds or (-np.inf, np.inf)
                rates = np.clip(np.concatenate([r.numpy().ravel() for r in model.inner_rates]), low, high)
                print(
                    f"{name}: learned rates min {rates.min():.3f}, max {rates.max():.3f}, "
                    f"{np.mean(rates < 0):.0%} negative, {np.mean(rates == 0):.0%} zero (init 0.01)"
                )
        scores = evaluate(model, tasks)
        results[name] = {s: m for s, (m, _) in scores.items()}
        rows.append(
            [
                name,
                *[f"{m:.3f} ± {h:.3f}" if np.isfinite(m) else "diverges" for m, h in scores.values()],
                f"{seconds:.0f}",
                f"{seconds / iterations * 1e3:.2f}",
            ]
        )
    for name, values in PAPER.items():
        rows.append([name, *[f"{v:.2f}" for v in values], "", ""])
    print(
        f"\nSinusoid regression, {iterations} meta-iterations (meta-batch 25, K=10), "
        f"evaluated on {eval_tasks} tasks with K=5 (MSE, 95 % interval over tasks)"
    )
    print_table(["method", "1 step", "5 steps", "10 steps", "train s", "ms / iteration"], rows)
    return results


if __name__ == "__main__":
    main()
