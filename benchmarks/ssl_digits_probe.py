"""Linear-probe accuracy of self-supervised encoders on digits (3 seeds).

The same CNN (`_ssl_experiment.digits_encoder`, 16 px) is pre-trained on the 1347 unlabeled training
digits with SimCLR, MoCo, Barlow Twins, VICReg, SimSiam, BYOL, DINO, rotation prediction, a denoising autoencoder,
relative patch position (3x3 grid of 4 px patches, gap 1, jitter 1) and jigsaw puzzles (3x3
tiles of 4 px, gap 1, jitter 1, 100 permutations), and
compared, in the same run, with a random-init encoder (lower reference) and a
supervised one (trained with all labels; upper reference). Each frozen encoder is
scored by the convex linear probe (C = 1) on 2 and 10 labels per class and on all
labels, tested on the 450 held-out digits. The headline figure is SimCLR minus random init
at 2 labels per class.

    python benchmarks/ssl_digits_probe.py [--quick] [--epochs 60] [--seeds 0 1 2] [--moco-bn-splits 2]
        [--simclr-temperature 0.5] [--validation] [--methods random relative_position jigsaw]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks._common import mean_std  # noqa: E402
from benchmarks._common import print_table  # noqa: E402
from benchmarks._ssl_experiment import LAST_METRICS  # noqa: E402
from benchmarks._ssl_experiment import METHODS  # noqa: E402
from benchmarks._ssl_experiment import pretrain  # noqa: E402
from benchmarks._ssl_experiment import probe  # noqa: E402
from keras_transfer.datasets import load_digits  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=list(METHODS) + ["random"],
        help="subset to run ('random' = 'random init', always included as the lower reference; the "
        "headline SimCLR - random init is printed when simclr runs)",
    )
    parser.add_argument("--moco-bn-splits", type=int, default=2, help="MoCo's bn_splits (shuffle-BN stand-in)")
    parser.add_argument("--simclr-temperature", type=float, default=0.5)
    parser.add_argument(
        "--validation",
        action="store_true",
        help="for choosing settings: pre-train and probe on 1000 training digits, score on the "
        "other 347 training digits; the test set is not touched",
    )
    args = parser.parse_args(argv)
    image_size = 16
    data = load_digits(image_size=image_size, channels=1, seed=0)
    (x_train, y_train), (x_test, y_test) = data
    if args.validation:
        order = np.random.default_rng(123).permutation(len(x_train))
        fit, held_out = order[:1000], order[1000:]
        (x_train, y_train), (x_test, y_test) = (x_train[fit], y_train[fit]), (x_train[held_out], y_train[held_out])
        data = ((x_train, y_train), (x_test, y_test))
    epochs, seeds, widths, budgets = args.epochs, args.seeds, (32, 64, 128), (2, 10, None)
    methods = [m for m in METHODS if m in set(args.methods) | {"random init"}]
    if args.quick:
        epochs, seeds, widths, budgets = 1, [0], (4, 8), (2, None)
        methods = ("random init", "simclr", "moco")  # the other pre-trainings run in the demo test
        x_train, y_train = x_train[:256], y_train[:256]
        data = ((x_train, y_train), (x_test[:100], y_test[:100]))
    results = {m: {b: [] for b in budgets} for m in methods}
    seconds = {m: [] for m in methods}
    for seed in seeds:
        for method in methods:
            start = time.time()
            encoder = pretrain(
                method,
                x_train,
                y_train,
                epochs,
                seed=seed,
                image_size=image_size,
                widths=widths,
                moco_bn_splits=args.moco_bn_splits,
                simclr_temperature=args.simclr_temperature,
            )
            seconds[method].append(time.time() - start)
            final = dict(LAST_METRICS)
            for budget, accuracy in probe(encoder, data, budgets, seed=seed).items():
                results[method][budget].append(accuracy)
            print(
                f"seed {seed} {method}: "
                + ", ".join(f"{b or 'all'}={results[method][b][-1]:.3f}" for b in budgets)
                + "".join(f"; last-epoch {k}={v:.3f}" for k, v in sorted(final.items())),
                flush=True,
            )
    name = lambda b: "all labels" if b is None else f"{b} labels/class"  # noqa: E731
    rows = []
    for method in methods:
        rows.append([method] + [mean_std(results[method][b]) for b in budgets] + [f"{np.mean(seconds[method]):.0f}"])
    split = "VALIDATION (347 held-out training digits)" if args.validation else "test"
    print(
        f"\nDigits {image_size}px, {epochs} pre-training epochs, seeds {seeds}, SimCLR temperature "
        f"{args.simclr_temperature}; linear-probe {split} accuracy (mean ± std over seeds):"
    )
    print_table(["encoder"] + [name(b) for b in budgets] + ["pre-train s"], rows)
    gains = None
    if "simclr" in methods:
        gains = {b: float(np.mean(results["simclr"][b]) - np.mean(results["random init"][b])) for b in budgets}
        print("\nSimCLR - random init (points): " + ", ".join(f"{name(b)}: {100 * g:+.1f}" for b, g in gains.items()))
    for method in methods:
        if method in ("random init", "simclr"):
            continue
        gaps = [100 * (a - r) for a, r in zip(results[method][budgets[0]], results["random init"][budgets[0]])]
        print(
            f"{method} - random init at {name(budgets[0])}, per seed (points): "
            + ", ".join(f"{g:+.1f}" for g in gaps)
            + f" (mean {np.mean(gaps):+.1f})"
        )
    return {"results": results, "simclr_gain": gains}


if __name__ == "__main__":
    main()
