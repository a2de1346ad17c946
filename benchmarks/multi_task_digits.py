"""Multi-task learning vs sequential transfer vs single-task on two digit tasks.

Task A: digits 0-4, every training label (675 images). Task B: digits 5-9 with few
labels per class. simple_cnn at 16 px (the network of transfer_vs_scratch.py).

- single-task B: the network trained on B's labels only, from scratch;
- sequential A -> B: trained on A, new head, every weight fine-tuned on B (the trunk's
  accuracy on A, with A's head put back, shows what B's fine-tuning kept of A);
- multi-task: one trunk, heads A and B, trained on mixed batches
  (`multi_task_dataset`, uniform task sampling so B's few examples are not drowned),
  with uniform loss weights or Kendall et al.'s uncertainty weights.

python benchmarks/multi_task_digits.py            # 3 seeds, 3, 10 and 50 labels per class of B
python benchmarks/multi_task_digits.py --quick    # CI: 1 seed, tiny network, 1 epoch, no uniform-weights row
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections
import statistics
import time

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import models
from keras_transfer import recipes

METHODS = ("single-task B", "sequential A→B", "multi-task (uniform weights)", "multi-task (uncertainty)")


def multi_task(split, loss_weights, widths, epochs, seed, learning_rate=2e-3):
    """A `MultiTaskModel` on simple_cnn features, trained on A (all labels) and B (few)."""
    keras.utils.set_random_seed(seed)
    x = split.source_train[0]
    classifier = recipes.build_classifier("simple_cnn", 5, x.shape[1:], widths=widths)
    trunk = keras.Model(classifier.inputs, recipes.get_head(classifier).input)
    model = models.MultiTaskModel(trunk, {"a": 5, "b": 5}, loss_weights=loss_weights)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    data = datasets.multi_task_dataset(
        {"a": split.source_train, "b": split.target_train}, "uniform", batch_size=32, seed=seed
    )
    model.fit(data, epochs=epochs, verbose=0)
    return model, len(data) * epochs


def head_accuracy(model, task, x, y):
    return float(np.mean(model.predict(x, batch_size=256, verbose=0)[task].argmax(-1) == y))


def with_head(model, head):
    """`model`'s features (below its head) under another model's `head` layer."""
    return keras.Model(model.inputs, head(recipes.get_head(model).input))


def run_seed(seed, labels, args, methods=METHODS):
    """{(labels, method): (B accuracy, A accuracy or None)} of one seed, and the step counts."""
    scores, steps = {}, {}
    base = datasets.digits_source_target(image_size=16, labels_per_class=1, seed=seed)
    source = _common.pretrain_source(*base.source_train, 5, args.source_epochs, args.widths, seed)
    source_a = recipes.evaluate_accuracy(source, *base.source_test)
    for n in labels:
        split = datasets.digits_source_target(image_size=16, labels_per_class=n, seed=seed)
        x, y = split.target_train
        single = _common.train_scratch(x, y, 5, args.target_epochs, args.widths, seed)
        scores[(n, METHODS[0])] = (recipes.evaluate_accuracy(single, *split.target_test), None)
        tuned = _common.transfer(source, x, y, 5, "fine-tune", args.target_epochs, seed)
        kept_a = recipes.evaluate_accuracy(with_head(tuned, recipes.get_head(source)), *split.source_test)
        scores[(n, METHODS[1])] = (recipes.evaluate_accuracy(tuned, *split.target_test), kept_a)
        steps[(n, METHODS[0])] = args.target_epochs * -(-len(x) // 16)
        steps[(n, METHODS[1])] = args.source_epochs * -(-len(split.source_train[0]) // 32) + steps[(n, METHODS[0])]
        for method, weights in zip(METHODS[2:], ("uniform", "uncertainty")):
            if method not in methods:
                continue
            model, steps[(n, method)] = multi_task(split, weights, args.widths, args.mt_epochs, seed)
            scores[(n, method)] = (
                head_accuracy(model, "b", *split.target_test),
                head_accuracy(model, "a", *split.source_test),
            )
    return scores, steps, source_a


def summary(values):
    """`median [min, max]` of per-seed values."""
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", default="3,10,50", help="labelled examples per class of task B")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    labels = [5] if args.quick else [int(v) for v in args.labels.split(",")]
    args.source_epochs, args.target_epochs, args.mt_epochs = (1, 1, 1) if args.quick else (15, 30, 20)
    args.widths = (4, 8, 8) if args.quick else (16, 32, 64)
    # --quick: one multi-task row (the uncertainty one runs every code path of the uniform one).
    methods = [m for m in METHODS if not (args.quick and m == METHODS[2])]

    start = time.perf_counter()
    per_seed, steps, source_a = [], {}, []
    for seed in range(seeds):
        scores, steps, a = run_seed(seed, labels, args, methods)
        per_seed.append(scores)
        source_a.append(a)
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    b_accuracy = collections.defaultdict(list)
    a_accuracy = collections.defaultdict(list)
    for scores in per_seed:
        for key, (b, a) in scores.items():
            b_accuracy[key].append(b)
            if a is not None:
                a_accuracy[key].append(a)
    rows = []
    for n in labels:
        for method in methods:
            key = (n, method)
            a = summary(a_accuracy[key]) if key in a_accuracy else "–"
            rows.append([n, method, summary(b_accuracy[key]), a, steps[key]])
    print(
        f"\nDigits 0-4 (A, all labels) and 5-9 (B, few labels), simple_cnn at 16 px, {seeds} seed(s): "
        "test accuracy, median [min, max]"
    )
    _common.print_table(["B labels/class", "method", "B accuracy", "A accuracy", "steps"], rows)
    print(f"\nA-only model (before fine-tuning on B), A accuracy: {summary(source_a)}")
    print(f"Total time: {time.perf_counter() - start:.0f} s")
    return {
        "b_accuracy": dict(b_accuracy),
        "a_accuracy": dict(a_accuracy),
        "source_a_accuracy": source_a,
        "steps": steps,
        "labels": labels,
        "methods": methods,
        "seeds": seeds,
    }


if __name__ == "__main__":
    main()
