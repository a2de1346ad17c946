"""LP-FT vs FT in and out of distribution (Kumar et al. 2022), digits -> digits-M.

The source backbone is pretrained on digits 0-4 from BOTH domains (plain digits and
digits-M), so its features cover the shift. The target task (5-9, few labels) is
fine-tuned on plain digits only (in-distribution, ID) and evaluated on plain digits
(ID) and on digits-M (out-of-distribution, OOD).

    python benchmarks/lpft_ood.py [--quick]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import collections

import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

METHODS = ("linear probe", "fine-tune", "LP-FT")


def _split(seed, labels_per_class):
    (xd, yd), (xdt, ydt) = datasets.load_digits(16, 3, seed=seed)
    (xm, ym), (xmt, ymt) = datasets.load_digits_m(16, seed=seed)
    src = np.isin(yd, range(5))
    source_x = np.concatenate([xd[src], xm[src]])
    source_y = np.concatenate([yd[src], ym[src]])
    ind = datasets.split_source_target((xd, yd), (xdt, ydt), range(5), range(5, 10), labels_per_class, seed)
    ood = datasets.split_source_target((xm, ym), (xmt, ymt), range(5), range(5, 10), labels_per_class, seed)
    return (source_x, source_y), ind.target_train, ind.target_test, ood.target_test


def main(argv=None):
    args = _common.digits_transfer_arguments(__doc__, argv)
    seeds, source_epochs, target_epochs, widths = _common.run_settings(args, 20, 30)

    scores = collections.defaultdict(list)
    for seed in range(seeds):
        (sx, sy), (tx, ty), id_test, ood_test = _split(seed, args.labels)
        source = _common.pretrain_source(sx, sy, 5, source_epochs, widths, seed)
        for method in METHODS:
            model = _common.transfer(source, tx, ty, 5, method, target_epochs, seed)
            scores[(method, "ID")].append(recipes.evaluate_accuracy(model, *id_test))
            scores[(method, "OOD")].append(recipes.evaluate_accuracy(model, *ood_test))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print(
        f"\nTarget digits 5-9, {args.labels} labels/class on plain digits; ID = digits, OOD = digits-M; "
        f"{seeds} seed(s), mean ± std"
    )
    _common.print_table(
        ["method", "ID accuracy", "OOD accuracy"],
        [[m, _common.mean_std(scores[(m, "ID")]), _common.mean_std(scores[(m, "OOD")])] for m in METHODS],
    )
    return {key: float(np.mean(v)) for key, v in scores.items()}


if __name__ == "__main__":
    main()
