"""Does a skewed source harm a group after transfer? The bias report on digits with inverted images.

A source classifier of the ten digits is pretrained either on normal images only
(skewed: no inverted images) or on the same images with a random half inverted
(balanced control). The target task (the ten digits, a few labels per class drawn
apart from the source images) has both polarities in its training and test data;
the group "inverted" is the test images with inverted polarity. Each source is
transferred (linear probe, fine-tune) and compared by `transfer_bias_report` with a
from-scratch model trained on the same target data.

python benchmarks/bias_digits.py            # 3 seeds
python benchmarks/bias_digits.py --quick    # CI: 1 seed, skewed source and linear probe only, tiny epochs
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import collections  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import _common  # noqa: E402
from keras_transfer import datasets  # noqa: E402
from keras_transfer import recipes  # noqa: E402

SOURCES = ("skewed (no inverted)", "balanced (half inverted)")
METHODS = ("linear probe", "fine-tune")


def invert_half(x, seed):
    """A copy of uint8 images `x` with a random half inverted (255 - x), and the boolean mask of those."""
    rng = np.random.default_rng(seed)
    inverted = rng.permutation(len(x)) < len(x) // 2
    x = x.copy()
    x[inverted] = 255 - x[inverted]
    return x, inverted


def split_digits(labels, image_size, seed):
    """Digits 0-9: a source set, `labels` target examples per class (disjoint from it) and the test split."""
    (x, y), test = datasets.load_digits(image_size=image_size, seed=seed)
    rng = np.random.default_rng(seed)
    target = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:labels] for c in range(10)])
    source = np.setdiff1d(np.arange(len(y)), target)
    return (x[source], y[source]), (x[target], y[target]), test


def run_seed(seed, labels, image_size, widths, source_epochs, target_epochs, sources=SOURCES, methods=METHODS):
    """{(source, method): BiasReport} for one seed."""
    (x_source, y_source), (x_train, y_train), (x_test, y_test) = split_digits(labels, image_size, seed)
    x_train, _ = invert_half(x_train, seed + 100)
    x_test, inverted = invert_half(x_test, seed + 200)
    groups = np.where(inverted, "inverted", "normal")
    baseline = _common.train_scratch(x_train, y_train, 10, target_epochs, widths, seed)
    reports = {}
    for source_name in sources:
        x_src = x_source if source_name == SOURCES[0] else invert_half(x_source, seed + 300)[0]
        source = _common.pretrain_source(x_src, y_source, 10, source_epochs, widths, seed)
        for method in methods:
            model = _common.transfer(source, x_train, y_train, 10, method, target_epochs, seed)
            reports[(source_name, method)] = recipes.transfer_bias_report(
                model, x_test, y_test, baseline=baseline, groups=groups
            )
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=5, help="labelled target examples per class")
    parser.add_argument("--plot", default=None, help="write the first seed's skewed linear-probe forest plot here")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    source_epochs, target_epochs = (1, 1) if args.quick else (15, 30)
    widths = (4, 8, 16) if args.quick else (16, 32, 64)
    labels = 2 if args.quick else args.labels

    image_size = 8 if args.quick else 16
    runs = []
    for seed in range(seeds):
        if args.quick:
            reports = run_seed(seed, labels, image_size, widths, source_epochs, target_epochs, SOURCES[:1], METHODS[:1])
        else:
            reports = run_seed(seed, labels, image_size, widths, source_epochs, target_epochs)
        runs.append(reports)
        if not args.quick:
            for (source_name, method), report in reports.items():
                print(f"\nseed {seed}, source {source_name}, {method}:\n{report}", flush=True)
        if seed == 0 and args.plot:
            reports[(SOURCES[0], METHODS[0])].plot(args.plot)
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    summary = collections.defaultdict(list)
    for reports in runs:
        for key, report in reports.items():
            summary[key].append(report)
    rows = []
    for (source_name, method), reports in summary.items():
        flagged_classes = sum(row["kind"] == "class" and row["harmed"] for r in reports for row in r)
        num_classes = sum(row["kind"] == "class" for r in reports for row in r)
        for group in ("normal", "inverted"):
            rows.append(
                [source_name, method, group]
                + [_common.mean_std([r[group][k] for r in reports]) for k in ("transferred", "baseline", "difference")]
                + [f"{sum(group in r.harmed for r in reports)}/{len(reports)}", f"{flagged_classes}/{num_classes}"]
            )
    print(
        f"\nDigits 0-9, source pretraining -> {labels} target labels/class (half inverted), "
        f"simple_cnn at {image_size} px, {seeds} seed(s), "
        "mean ± std; harmed: seeds where the 95% paired interval of transferred - scratch lies below 0; "
        "classes harmed: class rows flagged over all seeds"
    )
    header = ["source", "transfer", "group", "transferred", "scratch", "difference", "harmed", "classes harmed"]
    _common.print_table(header, rows)
    return {"runs": runs, "rows": rows}


if __name__ == "__main__":
    main()
