"""Demo: MAML on sinusoid regression (Finn et al. 2017, §5.1) at the paper's settings;
adapted vs pretrained models after 1 / 5 / 10 steps, with the paper's numbers; a plot."""

import os
import time

import keras
import numpy as np

from keras_transfer import datasets
from keras_transfer.demos import report
from keras_transfer.models import MetaModel

EVAL_STEPS = (1, 5, 10)
# Finn et al. 2017, §5.1 (K=5, mean query MSE after 1 / 5 / 10 steps), as quoted in BENCHMARKS.md.
PAPER = {"MAML": (0.67, 0.38, 0.35), "pretrained + fine-tune": (2.41, 2.23, 2.19)}


def _mlp():
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(40, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def _per_task_mse(model, tasks):
    (sx, sy, qx), qy = tasks
    out = {}
    for steps in EVAL_STEPS:
        pred = model.adapt_and_predict(sx, sy, qx, steps=steps).numpy().astype("float64")
        out[steps] = np.mean((pred - qy) ** 2, axis=tuple(range(1, pred.ndim)))
    return out


def _non_monotone_note(name, per_task):
    """Why a mean rises with more steps while most tasks improve (or None when it falls)."""
    notes = []
    for a, b in zip(EVAL_STEPS, EVAL_STEPS[1:]):
        mean_a, mean_b = per_task[a].mean(), per_task[b].mean()
        if mean_b <= mean_a:
            continue
        change = per_task[b] - per_task[a]
        worse = change > 0
        top = np.sort(change)[::-1][: max(1, len(change) // 100)]
        notes.append(
            f"{name}: the mean rises from {a} to {b} steps ({mean_a:.3f} -> {mean_b:.3f}) although "
            f"{np.mean(~worse):.0%} of the tasks improve and the median falls "
            f"({np.median(per_task[a]):.3f} -> {np.median(per_task[b]):.3f}): plain SGD (alpha=0.01) "
            f"on 5 points overshoots on a few tasks, and the worst 1 % ({len(top)} tasks) add "
            f"{top.sum() / len(change):+.3f} to the mean."
        )
    return notes


def _plot_task(meta, adapted, baseline, sx, sy, amp, phase, output_dir):
    grid = np.linspace(-5, 5, 200, dtype="float32")[:, None]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a dependency; keep the demo running without it anyway
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(grid, amp * np.sin(grid - phase), "k", label="true task")
    ax.plot(grid, meta.predict(grid, verbose=0), ":", label="MAML initialisation")
    ax.plot(grid, adapted.predict(grid, verbose=0), label="MAML after 10 steps")
    ax.plot(grid, baseline.adapt(sx, sy, steps=10).predict(grid, verbose=0), "--", label="pretrained after 10 steps")
    ax.scatter(sx, sy, c="r", zorder=5, label="K=5 support")
    ax.legend(fontsize=7)
    ax.set_title("Sinusoid regression, K=5", fontsize=9)
    fig.tight_layout()
    path = os.path.join(output_dir, "maml_sinusoid.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"Plot: {path}")


def run(output_dir, quick=False, seed=0):
    """Meta-trains MAML on sinusoids and compares it with a pretrained regressor.

    Full run: the paper's 70,000 meta-iterations (about a minute on 2 CPU cores), the
    evaluation of `benchmarks/meta_sinusoid.py` (600 new tasks, K=5, 100 query points).

    Returns {method: {steps: mean query MSE}} over the held-out tasks.
    """
    os.makedirs(output_dir, exist_ok=True)
    iterations = 3000 if quick else 70000
    num_tasks = 100 if quick else 600
    steps_per_batch = 50
    print(
        f"MAML (Finn et al. 2017): 1-40-40-1 MLP, meta-batch 25 sinusoid tasks, K=10, one inner step "
        f"alpha=0.01, Adam 1e-3, {iterations} meta-iterations"
        f"{' (quick: the paper uses 70,000)' if quick else ' (as in the paper)'}, "
        f"{steps_per_batch} per compiled call."
    )
    keras.utils.set_random_seed(seed)
    meta = MetaModel(_mlp(), inner_steps=1, inner_learning_rate=0.01, steps_per_batch=steps_per_batch)
    meta.compile(keras.optimizers.Adam(1e-3), loss="mse")
    data = datasets.sinusoid_task_dataset(25, 10, 10, seed=seed + 1).batch(steps_per_batch, drop_remainder=True)
    start = time.perf_counter()
    meta.fit(data, steps_per_epoch=iterations // steps_per_batch, epochs=1, verbose=0, shuffle=False)
    maml_seconds = time.perf_counter() - start
    print(
        f"Meta-training took {maml_seconds:.1f} s ({maml_seconds / iterations * 1e3:.2f} ms per "
        "meta-iteration, XLA compilation included)."
    )

    print(
        f"Pretrained baseline: the same MLP, {iterations} Adam steps on the 500 points of each "
        "meta-batch pooled over its tasks, then fine-tuned like MAML."
    )
    keras.utils.set_random_seed(seed)
    pre = _mlp()
    pre.compile(keras.optimizers.Adam(1e-3), loss="mse", steps_per_execution=100)
    pooled = datasets.sinusoid_task_dataset(25, 10, 10, seed=seed + 1).map(
        lambda x, qy: (
            keras.ops.reshape(keras.ops.concatenate([x[0], x[2]], 1), (-1, 1)),
            keras.ops.reshape(keras.ops.concatenate([x[1], qy], 1), (-1, 1)),
        )
    )
    start = time.perf_counter()
    pre.fit(pooled, steps_per_epoch=iterations, epochs=1, verbose=0, shuffle=False)
    print(f"Pretraining took {time.perf_counter() - start:.1f} s.")
    baseline = MetaModel(pre, inner_learning_rate=0.01)

    # The held-out tasks of benchmarks/meta_sinusoid.py.
    tasks, (amp, phase) = datasets.sinusoid_tasks(num_tasks, 5, 100, seed=12345 + seed, return_parameters=True)
    results, rows, notes = {}, [], []
    for name, model in (("MAML", meta), ("pretrained + fine-tune", baseline)):
        per_task = _per_task_mse(model, tasks)
        results[name] = {s: float(per_task[s].mean()) for s in EVAL_STEPS}
        cells = []
        for s in EVAL_STEPS:
            half = 1.96 * per_task[s].std(ddof=1) / np.sqrt(num_tasks)
            cells.append(f"{per_task[s].mean():.3f} ± {half:.3f} ({np.median(per_task[s]):.3f})")
        rows.append([name] + cells)
        notes += _non_monotone_note(name, per_task)
    for name, values in PAPER.items():
        rows.append([f"{name} (paper)"] + [f"{v:.2f}" for v in values])
    print(
        f"\nQuery MSE on {num_tasks} new tasks after adapting on K=5 points with SGD (alpha=0.01): "
        "mean ± 95 % interval over tasks (median):"
    )
    report.print_table(["model", "1 step", "5 steps", "10 steps"], rows)
    for note in notes:
        print(note)
    if quick:
        print(
            f"(Quick run: {iterations} meta-iterations, far from the paper's 70,000; the full demo "
            "matches benchmarks/meta_sinusoid.py.)"
        )

    # One task, plotted: the adapted MAML model is a plain keras.Model.
    (sx, sy, _), _ = tasks
    adapted = meta.adapt(sx[0], sy[0], steps=10)
    _plot_task(meta, adapted, baseline, sx[0], sy[0], amp[0], phase[0], output_dir)
    adapted.save(os.path.join(output_dir, "adapted_task0.keras"))
    return results
