"""When to transfer: linear probe vs fine-tune vs from scratch, over target size and similarity.

The usual decision table (target data small or large, similar to the source or different)
recommends a linear probe for a small similar target, fine-tuning for a large similar one,
a probe on earlier layers (or care) for a small different one, and training from scratch
(or fine-tuning) for a large different one. This benchmark measures each cell.

Source: simple_cnn trained on digits 0-4 (all labels, grey repeated to RGB, 16 px).
Targets (5 classes, digits 5-9, `--labels` labelled examples per class):

- similar: plain digits 5-9;
- inverted: digits 5-9 with inverted pixels (255 - x), a large low-level shift;
- digits-M: digits 5-9 blended with colour photo patches (`load_digits_m`).

Methods: "linear probe" (convex, frozen source backbone, on the globally pooled features
that feed the head), "block3 probe" and "block2 probe" (the same logistic regression on the
flattened, unpooled output of the last block or of the second block: the "probe earlier
layers" advice, and its control at the last block), "fine-tune" (new head, every weight
trained) and "from scratch" (the same network, random initialisation). Each cell is run
for `--seeds` seeds (a new source model, labelled subset and initialisation per seed);
the tables give the median test accuracy and the range over seeds.

python benchmarks/when_to_transfer.py            # 3 seeds, 3, 10 and 50 labels per class
python benchmarks/when_to_transfer.py --quick    # CI: 1 seed, 2 labels per class, two targets, tiny network
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections
import statistics
import time

import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

METHODS = ("linear probe", "block3 probe", "block2 probe", "fine-tune", "from scratch")
# Unpooled probes: the layer whose flattened output a logistic regression reads.
PROBE_LAYERS = {"block3 probe": "block3_relu", "block2 probe": "block2_pool"}
SIMILARITIES = ("similar", "inverted", "digits-M")
# The decision table's recommendation per (size, similarity): the methods that follow it.
# A small similar target: a linear classifier on the last layer's features (pooled or not).
RECOMMENDED = {
    ("small", "similar"): ("linear probe", "block3 probe"),
    ("large", "similar"): ("fine-tune",),
    ("small", "different"): ("block2 probe",),
    ("large", "different"): ("from scratch", "fine-tune"),
}
IMAGE_SIZE = 16
SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)


def source_split(seed):
    """The source task: digits 0-4, every training label, grey repeated to RGB."""
    split = datasets.digits_source_target(image_size=IMAGE_SIZE, channels=3, labels_per_class=1, seed=seed)
    (x, y), (x_test, y_test) = split.source_train, split.source_test
    return (x.astype("float32"), y), (x_test.astype("float32"), y_test)


def target_split(similarity, labels_per_class, seed):
    """`((x_train, y_train), (x_test, y_test))` of the target digits 5-9 in one similarity setting."""
    if similarity == "digits-M":
        train, test = datasets.load_digits_m(image_size=IMAGE_SIZE, seed=seed)
    else:
        train, test = datasets.load_digits(image_size=IMAGE_SIZE, channels=3, seed=seed)
    split = datasets.split_source_target(train, test, SOURCE, TARGET, labels_per_class, seed)
    (x, y), (x_test, y_test) = split.target_train, split.target_test
    if similarity == "inverted":
        x, x_test = 255 - x, 255 - x_test
    return (x.astype("float32"), y), (x_test.astype("float32"), y_test)


def layer_probe(source, layer, x, y, x_test, y_test, seed):
    """Test accuracy of a logistic regression on a backbone layer's flattened (unpooled) output."""
    extractor = recipes.feature_extractor(source, layer=layer)
    kernel, bias, _ = recipes.fit_logistic_regression(
        recipes.extract_features(extractor, x, use_cache=False), y, 5, seed=seed
    )
    logits = recipes.extract_features(extractor, x_test, use_cache=False) @ kernel + bias
    return float(np.mean(np.argmax(logits, axis=1) == y_test))


def run_cell(source, similarity, n, seed, args):
    """{method: target test accuracy} of one (similarity, labels per class, seed) cell."""
    (x, y), (x_test, y_test) = target_split(similarity, n, seed)
    scores = {}
    for method in ("linear probe", "fine-tune"):
        model = _common.transfer(source, x, y, 5, method, args.target_epochs, seed)
        scores[method] = recipes.evaluate_accuracy(model, x_test, y_test)
    for method, layer in PROBE_LAYERS.items():
        scores[method] = layer_probe(source, layer, x, y, x_test, y_test, seed)
    scratch = _common.train_scratch(x, y, 5, args.target_epochs, args.widths, seed)
    scores["from scratch"] = recipes.evaluate_accuracy(scratch, x_test, y_test)
    return scores


def summary(values):
    """`median [min-max]` of per-seed values."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def decide(scores, size, similarity):
    """The best methods of a cell (by median; ties all named), the recommendation and whether it held.

    "yes": a recommended method has the best median; "tie (ranges overlap)": a recommended
    method's range over seeds overlaps a best method's range; "no": otherwise; "–": no
    recommendation for this size.
    """
    medians = {m: statistics.median(v) for m, v in scores.items()}
    top = max(medians.values())
    best = [m for m in METHODS if medians[m] == top]
    recommended = RECOMMENDED.get((size, "similar" if similarity == "similar" else "different"))
    if recommended is None:
        return " = ".join(best), "–", "–"
    if set(best) & set(recommended):
        held = "yes"
    elif any(max(scores[m]) >= min(scores[b]) for m in recommended for b in best):
        held = "tie (ranges overlap)"
    else:
        held = "no"
    return " = ".join(best), " or ".join(recommended), held


def size_names(labels):
    """ "small" for the smallest label count, "large" for the largest, "medium" between."""
    return {n: "small" if n == min(labels) else "large" if n == max(labels) else "medium" for n in labels}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", default="3,10,50", help="labelled examples per target class (comma-separated)")
    parser.add_argument("--targets", default=",".join(SIMILARITIES), help="target settings (comma-separated)")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    labels = [2] if args.quick else [int(v) for v in args.labels.split(",")]
    similarities = ["similar", "digits-M"] if args.quick else args.targets.split(",")
    unknown = sorted(set(similarities) - set(SIMILARITIES))
    if unknown:
        parser.error(f"unknown --targets {unknown}; choose from {SIMILARITIES}")
    args.source_epochs, args.target_epochs = (1, 1) if args.quick else (15, 30)
    args.widths = (4, 8, 8) if args.quick else (16, 32, 64)
    sizes = size_names(labels)

    start = time.perf_counter()
    scores = collections.defaultdict(list)  # (similarity, n, method) -> per-seed accuracies
    source_accuracy = []
    for seed in range(seeds):
        (x_source, y_source), (x_source_test, y_source_test) = source_split(seed)
        source = _common.pretrain_source(x_source, y_source, 5, args.source_epochs, args.widths, seed)
        source_accuracy.append(recipes.evaluate_accuracy(source, x_source_test, y_source_test))
        for similarity in similarities:
            for n in labels:
                for method, accuracy in run_cell(source, similarity, n, seed, args).items():
                    scores[(similarity, n, method)].append(accuracy)
        print(f"seed {seed} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    rows, decisions = [], []
    for similarity in similarities:
        for n in labels:
            cell = {m: scores[(similarity, n, m)] for m in METHODS}
            rows.append([similarity, n] + [summary(cell[m]) for m in METHODS])
            best, recommended, held = decide(cell, sizes[n], similarity)
            decisions.append([f"{sizes[n]} ({n}/class)", similarity, best, recommended, held])
    print(
        f"\n(a) Target test accuracy, source digits 0-4 -> target digits 5-9, simple_cnn at {IMAGE_SIZE} px, "
        f"{seeds} seed(s), median [min-max]"
    )
    _common.print_table(["target", "labels/class"] + list(METHODS), rows)
    print("\n(b) The decision table the measurement supports")
    _common.print_table(["size", "similarity", "best (median)", "recommended", "held"], decisions)
    print(f"\nSource test accuracy (digits 0-4): {summary(source_accuracy)}")
    print(f"Total time: {time.perf_counter() - start:.0f} s")
    return {
        "scores": dict(scores),
        "decisions": decisions,
        "labels": labels,
        "targets": similarities,
        "seeds": seeds,
        "source_accuracy": source_accuracy,
    }


if __name__ == "__main__":
    main()
