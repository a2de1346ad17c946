"""Forgetting in sequential transfer on digits: what the source task keeps after fine-tuning on a target.

The source task is digits 0-4 (every training image), the target task digits 5-9
(`--labels` training images per class), both 16x16 grey, from scikit-learn's digits
(`keras_transfer.datasets.load_digits`, a stratified 75/25 split per seed). A simple_cnn
is trained on the source; its BatchNorm layers are then frozen (as `unfreeze_backbone`
does for fine-tuning), and the diagonal Fisher of its backbone is estimated on the
source training images (`keras_transfer.ops.diagonal_fisher`, empirical: source labels).

Every method starts from the same point: the source backbone with a new, randomly
initialised 5-class head (`--head probe`: fitted first by the convex linear probe,
`recipes.linear_probe`, which also adds a "linear probe" row), then the whole backbone
(BatchNorm frozen) and the head train with Adam (`--learning-rate`, 1e-3; batch 16) on
the target for 20 epochs:

- fine-tune: the cross-entropy only;
- L2-SP: `AnchoredFineTuning(method="l2_sp")`, anchor strength alpha, head L2 beta 0.01;
- EWC: `AnchoredFineTuning(method="ewc")` with the source Fisher, strength lambda;
- LwF: `LearningWithoutForgetting` (temperature 2, old-task weight 1): the old head
  trains too, on the distilled outputs of the source network on the target images;
- WiSE-FT: `recipes.wise_ft(start, fine_tuned, 0.5)`, the weight-space midpoint of the
  starting model (source backbone, new head) and the plain fine-tuned one.

Reported on the test images: the target accuracy (new head), and the source accuracy
kept, the source model's old head on the fine-tuned backbone (for LwF its trained old
head, which is part of the method); the source model alone gives the no-forgetting value.

    python benchmarks/forgetting_digits.py [--quick] [--seeds 3] [--labels 100] [--head random|probe]
        [--learning-rate 1e-3]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import models
from keras_transfer import ops
from keras_transfer import recipes

METHODS = (
    "linear probe",
    "fine-tune",
    "L2-SP (alpha 0.1)",
    "L2-SP (alpha 1)",
    "EWC (lambda 100)",
    "EWC (lambda 1000)",
    "LwF (T 2)",
    "WiSE-FT (0.5)",
)
QUICK_METHODS = ("fine-tune", "L2-SP (alpha 1)", "EWC (lambda 1000)", "LwF (T 2)", "WiSE-FT (0.5)")
PENALTIES = {
    "L2-SP (alpha 0.1)": ("l2_sp", 0.1),
    "L2-SP (alpha 1)": ("l2_sp", 1.0),
    "EWC (lambda 100)": ("ewc", 100.0),
    "EWC (lambda 1000)": ("ewc", 1000.0),
}


def _source(split, epochs, widths, seed, fisher_examples):
    """The source model (BatchNorm frozen after training) and its backbone's diagonal Fisher."""
    source = _common.pretrain_source(*split.source_train, 5, epochs, widths, seed)
    recipes.unfreeze_backbone(source)  # trainable backbone, BatchNorm frozen: the variables fine-tuning moves
    x, y = split.source_train
    keep = np.random.default_rng(seed).permutation(len(y))[:fisher_examples]
    variables = recipes.feature_extractor(source).trainable_variables
    fisher = ops.diagonal_fisher(source, x[keep], y[keep], batch_size=64, variables=variables)
    return source, fisher


def _probed(source, x, y, seed, probe=True):
    """The source backbone with a new logits head fitted by the convex linear probe (or left random)."""
    keras.utils.set_random_seed(seed)
    model = recipes.replace_head(source, 5, activation=None)
    if not probe:
        return model
    recipes.freeze_backbone(model)
    recipes.linear_probe(model, x, y, seed=seed)
    return recipes.unfreeze_backbone(model)


def _fine_tuned(source, probed, method, fisher, x, y, epochs, seed, learning_rate):
    """The fine-tuned classifier, and the old head's weights (LwF trains them; None otherwise)."""
    keras.utils.set_random_seed(seed)
    model = keras.models.clone_model(probed)
    model.set_weights(probed.get_weights())
    trained = model
    if method in PENALTIES:
        kind, strength = PENALTIES[method]
        trained = models.AnchoredFineTuning(model, kind, alpha=strength, beta=0.01, fisher=fisher)
    elif method.startswith("LwF"):
        trained = models.LearningWithoutForgetting(model, recipes.get_head(source), temperature=2.0, old_weight=1.0)
    trained.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(True)
    )
    trained.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model, trained.trained_old_head.get_weights() if method.startswith("LwF") else None


def _source_kept(source, target_model, x, y, old_head=None):
    """Source accuracy of the old head (or `old_head` weights) on `target_model`'s backbone."""
    old = keras.models.clone_model(source)
    old.set_weights(source.get_weights())
    recipes.get_backbone(old).set_weights(recipes.get_backbone(target_model).get_weights())
    if old_head is not None:
        recipes.get_head(old).set_weights(old_head)
    return recipes.evaluate_accuracy(old, x, y)


def _run_seed(seed, args, methods, source_epochs, target_epochs, widths, scores):
    (xd, yd), (xdt, ydt) = datasets.load_digits(16, 1, seed=seed)
    split = datasets.split_source_target((xd, yd), (xdt, ydt), range(5), range(5, 10), args.labels, seed)
    fisher_examples = 128 if args.quick else len(split.source_train[1])
    source, fisher = _source(split, source_epochs, widths, seed, fisher_examples)
    scores[("source model", "source")].append(recipes.evaluate_accuracy(source, *split.source_test))
    probed = _probed(source, *split.target_train, seed, probe=args.head == "probe")
    fine_tuned, train = None, (*split.target_train, target_epochs, seed, args.learning_rate)
    for method in methods:
        old_head = None
        if method == "linear probe":
            model = probed
        elif method == "WiSE-FT (0.5)":
            fine_tuned = fine_tuned or _fine_tuned(source, probed, "fine-tune", fisher, *train)[0]
            model = recipes.wise_ft(probed, fine_tuned, 0.5)
        else:
            model, old_head = _fine_tuned(source, probed, method, fisher, *train)
            fine_tuned = model if method == "fine-tune" else fine_tuned
        scores[(method, "target")].append(recipes.evaluate_accuracy(model, *split.target_test))
        scores[(method, "source")].append(_source_kept(source, model, *split.source_test, old_head))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, narrow network (the CI run)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=100, help="labelled target examples per class")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's rate on the target")
    parser.add_argument("--head", choices=("random", "probe"), default="random", help="the new head's start")
    args = parser.parse_args(argv)
    seeds, source_epochs, target_epochs, widths = _common.run_settings(args, 15, 20)
    source_epochs = 3 if args.quick else source_epochs  # one epoch leaves the source model near chance
    methods = QUICK_METHODS if args.quick else METHODS
    methods = [m for m in methods if m != "linear probe" or args.head == "probe"]
    scores = collections.defaultdict(list)
    for seed in range(seeds):
        _run_seed(seed, args, methods, source_epochs, target_epochs, widths, scores)
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    print(
        f"\nDigits 0-4 -> 5-9, {args.labels} target labels/class, {seeds} seed(s), "
        f"{target_epochs} target epoch(s): test accuracy, mean ± std"
    )
    rows = [["source model (no target training)", "–", _common.mean_std(scores[("source model", "source")])]]
    for method in methods:
        rows.append(
            [method, _common.mean_std(scores[(method, "target")]), _common.mean_std(scores[(method, "source")])]
        )
    _common.print_table(["method", "target accuracy (5-9)", "source accuracy kept (0-4)"], rows)
    return {key: float(np.mean(value)) for key, value in scores.items()}


if __name__ == "__main__":
    main()
