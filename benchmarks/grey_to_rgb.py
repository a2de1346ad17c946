"""Grey images into a colour-trained backbone: channel replication vs pseudo-colouring.

The source `simple_cnn` is trained on RGB digits-M (digits 0-4 on coloured photo patches);
the target task is plain grey digits 5-9 with few labels. The grey images reach the RGB
backbone through `ImageInputAdapter(grey_to_rgb=...)`: "replicate" (grey in R, G and B),
"learned" (a trainable 1x1 colour map, starting as replication, trained with the head in
phase 2) or "jet" (a fixed pseudo-colour map). Each is scored after a convex linear probe
and after LP-FT (`fine_tune`, all blocks).

    python benchmarks/grey_to_rgb.py [--quick] [--seeds 5] [--labels 10]
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

MODES = ("replicate", "learned", "jet")


def _probe_then_lpft(source, widths, mode, train, test, epochs, seed):
    """(linear-probe accuracy, LP-FT accuracy) for one input mapping, from the source's backbone."""
    keras.utils.set_random_seed(seed)
    model = recipes.build_classifier("simple_cnn", 5, train[0].shape[1:], grey_to_rgb=mode, widths=widths)
    recipes.get_backbone(model).set_weights(recipes.get_backbone(source).get_weights())
    recipes.fine_tune(model, *train, probe="convex", epochs=0, batch_size=16, verbose=0, seed=seed)
    probe = recipes.evaluate_accuracy(model, *test)
    # Phase 2 of LP-FT on the probed model: all blocks (and a learned colour map) train.
    recipes.fine_tune(model, *train, probe=None, epochs=epochs, learning_rate=1e-3, batch_size=16, verbose=0, seed=seed)
    return probe, recipes.evaluate_accuracy(model, *test)


def main(argv=None):
    args = _common.digits_transfer_arguments(__doc__, argv)
    seeds, source_epochs, target_epochs, widths = _common.run_settings(args, 15, 20)

    scores = collections.defaultdict(list)
    for seed in range(seeds):
        (xm, ym), _ = datasets.load_digits_m(16, seed=seed)
        (xd, yd), (xdt, ydt) = datasets.load_digits(16, 1, seed=seed)
        source_mask = ym < 5
        source = _common.pretrain_source(xm[source_mask], ym[source_mask], 5, source_epochs, widths, seed)
        split = datasets.split_source_target((xd, yd), (xdt, ydt), range(5), range(5, 10), args.labels, seed)
        for mode in MODES:
            probe, lpft = _probe_then_lpft(
                source, widths, mode, split.target_train, split.target_test, target_epochs, seed
            )
            scores[(mode, "linear probe")].append(probe)
            scores[(mode, "LP-FT")].append(lpft)
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(
        f"\nSource: RGB digits-M 0-4; target: grey digits 5-9, {args.labels} labels/class; {seeds} seed(s), mean ± std"
    )
    _common.print_table(
        ["grey_to_rgb", "linear probe", "LP-FT"],
        [
            [mode, _common.mean_std(scores[(mode, "linear probe")]), _common.mean_std(scores[(mode, "LP-FT")])]
            for mode in MODES
        ],
    )
    return {key: float(np.mean(value)) for key, value in scores.items()}


if __name__ == "__main__":
    main()
