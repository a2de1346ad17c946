"""Do transferability scores predict fine-tuned accuracy? Source models ranked on digits 5-9.

Source models: simple_cnn classifiers pre-trained on different source tasks built from
the digits 0-4 (all of them, fewer epochs, inverted or rotated images, a two-class
subset, shuffled labels) and one left at random initialisation. For each, LogME,
H-score and NCE (on the features / outputs of the labelled target images, no training)
and LEEP are computed with `rank_transferability`, then the source model is fine-tuned
on the same labelled images and tested on the held-out digits 5-9. Kendall's tau
between each score and the fine-tuned accuracy over the candidates measures how well
the score ranks them; seeds redraw the source training and the labelled target images.

python benchmarks/transferability_digits.py            # 8 candidates, 3 seeds
python benchmarks/transferability_digits.py --quick    # CI: 3 candidates, 1 seed, tiny epochs
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import statistics
import time

import keras
import numpy as np
from scipy import stats

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

METRICS = ("logme", "leep", "nce", "h_score")
PROTOCOLS = ("fine-tune", "linear probe")  # what the scores should predict: accuracy after each


def source_tasks(x, y):
    """{name: (x, y, num_classes, epoch share)}: source tasks derived from the digits 0-4."""
    rng = np.random.default_rng(0)
    subset = y < 2
    return {
        "0-4, full": (x, y, 5, 1.0),
        "0-4, 1/8 of the epochs": (x, y, 5, 0.125),
        "0-4, inverted": (255 - x, y, 5, 1.0),
        "0-4, rotated 90°": (np.rot90(x, axes=(1, 2)), y, 5, 1.0),
        "0-1 only": (x[subset], y[subset], 2, 1.0),
        "0-4, shuffled labels": (x, rng.permutation(y), 5, 1.0),
        "0-4, inverted, 1/8 of the epochs": (255 - x, y, 5, 0.125),
        "random init": (x, y, 5, 0.0),
    }


def build_sources(split, epochs, widths, seed, names=None):
    """{name: source classifier} trained on each source task (`names`: a subset, or None for all)."""
    x, y = split.source_train
    sources = {}
    for name, (sx, sy, num_classes, share) in source_tasks(x, y).items():
        if names is not None and name not in names:
            continue
        if share == 0.0:  # random init: built with the same seed, never trained
            sources[name] = _random_source(x.shape[1:], num_classes, widths, seed)
        else:
            sx, epochs_here = np.ascontiguousarray(sx), max(1, round(epochs * share))
            sources[name] = _common.pretrain_source(sx, sy, num_classes, epochs_here, widths, seed)
    return sources


def _random_source(input_shape, num_classes, widths, seed):
    keras.utils.set_random_seed(seed)
    return recipes.build_classifier("simple_cnn", num_classes, input_shape, widths=widths)


def run_seed(seed, args):
    split = datasets.digits_source_target(image_size=args.image_size, labels_per_class=args.labels, seed=seed)
    x, y = split.target_train
    sources = build_sources(split, args.source_epochs, args.widths, seed, args.candidates)
    start = time.perf_counter()
    scores = {metric: recipes.rank_transferability(sources, x, y, metric=metric).scores for metric in METRICS}
    seconds = {"scores": time.perf_counter() - start}
    accuracy = {protocol: {} for protocol in PROTOCOLS}
    for protocol in PROTOCOLS:
        start = time.perf_counter()
        for name, source in sources.items():
            model = _common.transfer(source, x, y, 5, protocol, args.target_epochs, seed)
            accuracy[protocol][name] = recipes.evaluate_accuracy(model, *split.target_test)
        seconds[protocol] = time.perf_counter() - start
    names = list(sources)
    taus = {
        protocol: {
            metric: float(
                stats.kendalltau([scores[metric][n] for n in names], [accuracy[protocol][n] for n in names]).statistic
            )
            for metric in METRICS
        }
        for protocol in PROTOCOLS
    }
    return {"scores": scores, "accuracy": accuracy, "tau": taus, "seconds": seconds}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=5, help="labelled target images per class")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.labels, args.candidates = 1, 4, ("0-4, full", "0-4, inverted", "random init")
        args.image_size, args.widths, args.source_epochs, args.target_epochs = 8, (4, 8, 8), 1, 1
    else:
        args.candidates, args.image_size, args.widths = None, 16, (16, 32, 64)
        args.source_epochs, args.target_epochs = 8, 30
    return args


def main(argv=None):
    args = parse(argv)
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, args))
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    names = list(runs[0]["accuracy"]["fine-tune"])
    print(
        f"\nSource models -> digits 5-9 ({args.labels} labels/class, {args.image_size} px), mean over "
        f"{args.seeds} seed(s): scores on the labelled target images, test accuracy after transfer"
    )
    mean = lambda values: f"{np.mean(list(values)):.3f}"  # noqa: E731
    rows = []
    for name in sorted(names, key=lambda n: -np.mean([r["accuracy"]["fine-tune"][n] for r in runs])):
        row = [name] + [mean(r["accuracy"][p][name] for r in runs) for p in PROTOCOLS]
        rows.append(row + [mean(r["scores"][m][name] for r in runs) for m in METRICS])
    _common.print_table(["source model"] + [f"{p} accuracy" for p in PROTOCOLS] + list(METRICS), rows)
    print(f"\nKendall's tau between score and test accuracy over {len(names)} candidates, {args.seeds} seed(s)")
    tau_rows = []
    for protocol in PROTOCOLS:
        for metric in METRICS:
            taus = [r["tau"][protocol][metric] for r in runs]
            spread = f"{min(taus):.2f} to {max(taus):.2f}"
            per_seed = ", ".join(f"{t:.2f}" for t in taus)
            # Seed means first: less noise in accuracies a few points apart.
            of_means = stats.kendalltau(
                [np.mean([r["scores"][metric][n] for r in runs]) for n in names],
                [np.mean([r["accuracy"][protocol][n] for r in runs]) for n in names],
            ).statistic
            row = [protocol, metric, f"{statistics.median(taus):.2f}", spread, per_seed, f"{of_means:.2f}"]
            tau_rows.append(row)
    _common.print_table(
        ["accuracy after", "score", "median tau", "range", "per seed", "tau of the seed means"], tau_rows
    )
    totals = {key: sum(r["seconds"][key] for r in runs) for key in runs[0]["seconds"]}
    print("\nSeconds in all: " + ", ".join(f"{key} {value:.1f}" for key, value in totals.items()))
    print(f"\n{time.perf_counter() - start:.0f} s in all", file=sys.stderr)
    return {"runs": runs, "names": names, "seconds": totals}


if __name__ == "__main__":
    main()
