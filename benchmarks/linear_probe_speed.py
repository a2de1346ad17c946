"""Convex linear probe (cached features + L-BFGS) vs `fit` with a frozen backbone.

Both fit the same head on the same frozen features; the benchmark reports their
accuracies and the median time ratio.

    python benchmarks/linear_probe_speed.py [--quick]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import keras

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-epochs", type=int, default=50)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    fit_epochs = 2 if args.quick else args.fit_epochs
    widths = (8, 16, 32) if args.quick else (16, 32, 64)

    split = datasets.digits_source_target(image_size=16, labels_per_class=100, seed=0)
    source = _common.pretrain_source(*split.source_train, 5, 1 if args.quick else 15, widths, seed=0)
    x, y = split.target_train

    def convex(C):
        def run():
            model = recipes.replace_head(source, 5)
            recipes.freeze_backbone(model)
            info = recipes.linear_probe(model, x, y, C=C, use_cache=False)  # time the extraction too
            return model, info

        return run

    def with_fit():
        keras.utils.set_random_seed(0)
        model = recipes.replace_head(source, 5)
        recipes.freeze_backbone(model)
        recipes.compile_for_fine_tuning(model, learning_rate=1e-2)
        model.fit(x, y, batch_size=32, epochs=fit_epochs, verbose=0)
        return model, None

    t_convex, (m_convex, _) = _common.median_seconds(convex(1.0), repeats)
    t_auto, (m_auto, info) = _common.median_seconds(convex("auto"), repeats)
    t_fit, (m_fit, _) = _common.median_seconds(with_fit, repeats)
    acc_convex = recipes.evaluate_accuracy(m_convex, *split.target_test)
    acc_auto = recipes.evaluate_accuracy(m_auto, *split.target_test)
    acc_fit = recipes.evaluate_accuracy(m_fit, *split.target_test)
    print(
        f"\nLinear probe on {len(x)} target images (digits 5-9, frozen simple_cnn source backbone), median of {repeats}"
    )
    _common.print_table(
        ["method", "test accuracy", "seconds", "speed-up"],
        [
            ["convex (L-BFGS, C=1)", f"{acc_convex:.3f}", f"{t_convex:.2f}", f"{t_fit / t_convex:.1f}x"],
            [
                f"convex (L-BFGS, C={info['C']:g} chosen by 3-fold CV)",
                f"{acc_auto:.3f}",
                f"{t_auto:.2f}",
                f"{t_fit / t_auto:.1f}x",
            ],
            [f"fit, frozen backbone, Adam, {fit_epochs} epochs", f"{acc_fit:.3f}", f"{t_fit:.2f}", "1.0x"],
        ],
    )
    return {
        "speedup": t_fit / t_convex,
        "speedup_auto": t_fit / t_auto,
        "acc_convex": acc_convex,
        "acc_auto": acc_auto,
        "acc_fit": acc_fit,
    }


if __name__ == "__main__":
    main()
