"""Transfer vs scratch on digits 0-4 -> 5-9, over label counts and seeds.

python benchmarks/transfer_vs_scratch.py            # 5 seeds, 1/5/20 labels per class
python benchmarks/transfer_vs_scratch.py --quick    # CI: 1 seed, tiny epochs
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

METHODS = ("from scratch", "linear probe", "fine-tune", "LP-FT")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", default="1,5,20")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    labels = [2] if args.quick else [int(v) for v in args.labels.split(",")]
    source_epochs, target_epochs = (1, 1) if args.quick else (15, 30)
    widths = (8, 16, 32) if args.quick else (16, 32, 64)

    scores = collections.defaultdict(list)
    for seed in range(seeds):
        base = datasets.digits_source_target(image_size=16, labels_per_class=1, seed=seed)
        source = _common.pretrain_source(*base.source_train, 5, source_epochs, widths, seed)
        for n in labels:
            split = datasets.digits_source_target(image_size=16, labels_per_class=n, seed=seed)
            x, y = split.target_train
            models = {"from scratch": _common.train_scratch(x, y, 5, target_epochs, widths, seed)}
            for method in METHODS[1:]:
                models[method] = _common.transfer(source, x, y, 5, method, target_epochs, seed)
            for method, model in models.items():
                scores[(n, method)].append(recipes.evaluate_accuracy(model, *split.target_test))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    rows = [[n] + [_common.mean_std(scores[(n, m)]) for m in METHODS] for n in labels]
    print(f"\nTarget test accuracy, digits 0-4 -> 5-9, simple_cnn at 16 px, {seeds} seed(s), mean ± std")
    _common.print_table(["labels/class"] + list(METHODS), rows)
    return {key: sum(v) / len(v) for key, v in scores.items()}


if __name__ == "__main__":
    main()
