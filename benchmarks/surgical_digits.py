"""Surgical fine-tuning (Lee et al. 2023): which block to fine-tune under which shift, on digits.

A simple_cnn is pretrained on plain digits; a target task with few labels is fine-tuned by
`keras_transfer.recipes.fine_tune` (convex linear probe of a new head, then the head plus
one part of the backbone): the first, middle or last block, or all of it; and `blocks="auto"`,
which runs those four from the same probed weights and keeps the best on a validation split.

Shifts:
- input-level, inverted: the same ten digits with inverted intensities (255 - x);
- input-level, digits-M: the same ten digits on coloured backgrounds;
- label-level: the source knows digits 0-4 only, the target is digits 5-9 (plain images).

Lee et al. report that the first block wins for input-level shifts and the last for
output-level ones. The target test split of each seed is halved: a validation half (for
"auto") and a test half (every accuracy here).

    python benchmarks/surgical_digits.py [--quick] [--seeds 5]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collections

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

CHOICES = ("first", "middle", "last", "all")
SHIFTS = ("input: inverted", "input: digits-M", "label: 0-4 -> 5-9")


def _tasks(shift, seed, labels_per_class):
    """(source (x, y), source classes, target train, target validation, target test) of one shift."""
    (xd, yd), (xdt, ydt) = datasets.load_digits(16, 3, seed=seed)
    if shift == "label: 0-4 -> 5-9":
        split = datasets.split_source_target((xd, yd), (xdt, ydt), range(5), range(5, 10), labels_per_class, seed)
        source, source_classes, target_train, target_test = split.source_train, 5, split.target_train, split.target_test
    else:
        if shift == "input: inverted":
            shifted = (255 - xd, yd), (255 - xdt, ydt)
        else:
            shifted = datasets.load_digits_m(16, seed=seed)
        split = datasets.split_source_target(*shifted, range(10), range(10), labels_per_class, seed)
        source, source_classes = (xd, yd), 10
        target_train, target_test = split.target_train, split.target_test
    x, y = target_test
    order = np.random.default_rng(seed).permutation(len(y))
    half = len(y) // 2
    validation = (x[order[:half]], y[order[:half]])
    test = (x[order[half:]], y[order[half:]])
    return source, source_classes, target_train, validation, test


def _surgical(source, train, validation, blocks, epochs, seed):
    keras.utils.set_random_seed(seed)
    num_classes = int(np.max(train[1])) + 1
    model = recipes.replace_head(source, num_classes)
    _, histories = recipes.fine_tune(
        model,
        *train,
        validation_data=validation,
        probe="convex",
        epochs=epochs,
        learning_rate=1e-3,
        blocks=blocks,
        batch_size=16,
        verbose=0,
        seed=seed,
    )
    return model, histories


def main(argv=None):
    args = _common.digits_transfer_arguments(__doc__, argv)
    seeds, source_epochs, target_epochs, widths = _common.run_settings(args, 15, 20)
    shifts = SHIFTS[2:] if args.quick else SHIFTS
    methods = ("last", "auto") if args.quick else CHOICES + ("auto",)

    scores = collections.defaultdict(list)
    picks = collections.defaultdict(collections.Counter)
    for seed in range(seeds):
        for shift in shifts:
            source_xy, source_classes, train, validation, test = _tasks(shift, seed, args.labels)
            source = _common.pretrain_source(*source_xy, source_classes, source_epochs, widths, seed)
            for blocks in methods:
                model, histories = _surgical(source, train, validation, blocks, target_epochs, seed)
                scores[(shift, blocks)].append(recipes.evaluate_accuracy(model, *test))
                if blocks == "auto":
                    picks[shift][histories["blocks"]["chosen"]] += 1
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(
        f"\nTarget test accuracy after surgical fine-tuning, {args.labels} labels/class, "
        f"{seeds} seed(s), mean ± std (best fixed choice in bold)"
    )
    rows = []
    for shift in shifts:
        means = {blocks: np.mean(scores[(shift, blocks)]) for blocks in CHOICES if scores[(shift, blocks)]}
        best = max(means, key=means.get)
        row = [shift]
        for blocks in CHOICES:
            cell = _common.mean_std(scores[(shift, blocks)]) if scores[(shift, blocks)] else "–"
            row.append(f"**{cell}**" if blocks == best else cell)
        chosen = ", ".join(f"{name} {count}" for name, count in picks[shift].most_common())
        row += [_common.mean_std(scores[(shift, "auto")]), chosen]
        rows.append(row)
    _common.print_table(["shift", *CHOICES, "auto", "auto chose"], rows)
    results = {key: float(np.mean(value)) for key, value in scores.items() if value}
    return results, {shift: dict(counts) for shift, counts in picks.items()}


if __name__ == "__main__":
    main()
