"""Adapters vs full fine-tuning vs LoRA vs linear probe on digits 0-4 -> 5-9 (few labels).

A keras.applications MobileNetV3Small (minimalistic, weights=None) is pretrained here on the
digits source task (0-4, all labels), then transferred to the target task (5-9, 10 labels per
class) by each method in the same run; every method starts from the same convex linear-probe
head (LP-FT style), so only what trains differs. Each method runs a 3-point learning-rate grid
around its own scale and reports its best rate (picked on the test mean: optimistic, equally so
for every method).

    python benchmarks/adapters_transfer.py            # 5 seeds x 11 methods x 3 rates (~40 min, 2 busy cores)
    python benchmarks/adapters_transfer.py --no-grid  # each method's middle rate only
    python benchmarks/adapters_transfer.py --quick    # CI: simple_cnn, 1 seed, tiny epochs
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer import recipes  # noqa: E402
from keras_transfer.demos.report import print_table  # noqa: E402

PROJECT = r"expanded_conv(_\d+)?_project"
ONE_BY_ONE = r"expanded_conv(_\d+)?_(expand|project)|conv_1"
CONVS = [keras.layers.Conv2D, keras.layers.DepthwiseConv2D]

# name -> (kind, add_adapters kwargs (targets included), learning-rate grid); the middle rate is
# the default (--no-grid, --quick). None kind: no training after the probe.
METHODS = {
    "linear probe": (None, {}, (None,)),
    "full fine-tune": ("full", {}, (3e-4, 1e-3, 3e-3)),
    "bottleneck M=8 (after project convs)": (
        "bottleneck", {"targets": PROJECT, "bottleneck_dim": 8}, (1e-3, 3e-3, 1e-2)),
    "conv series, per-channel (all convs)": (
        "conv_series", {"targets": CONVS, "per_channel": True}, (3e-3, 1e-2, 3e-2)),
    "conv series, full (project convs)": ("conv_series", {"targets": PROJECT}, (1e-3, 3e-3, 1e-2)),
    "conv parallel, per-channel (depthwise)": (
        "conv_parallel", {"targets": keras.layers.DepthwiseConv2D, "per_channel": True}, (3e-3, 1e-2, 3e-2)),
    "LoRA r=2 (1x1 convs)": ("lora", {"targets": ONE_BY_ONE, "rank": 2}, (1e-3, 3e-3, 1e-2)),
    # BatchNorm affine training: every BatchNormalization becomes a FrozenBatchNormalization
    # (gamma/beta train, the pretraining statistics stay: inference mode inside fit).
    "full fine-tune (BN affine, statistics frozen)": ("full_bn_affine", {}, (1e-3, 3e-3, 1e-2)),
    "BN affine only": ("bn_affine", {}, (3e-3, 1e-2, 3e-2)),
    "conv series, full (project convs) + BN affine": (
        "conv_series", {"targets": PROJECT, "train_batchnorm": "affine"}, (3e-3, 1e-2, 3e-2)),
    "conv parallel, per-channel (depthwise) + BN affine": (
        "conv_parallel", {"targets": keras.layers.DepthwiseConv2D, "per_channel": True,
                          "train_batchnorm": "affine"}, (3e-3, 1e-2, 3e-2)),
}
QUICK_TARGETS = {"targets": r"block\d_conv"}


def recalibrate_batchnorm(model, x):
    """Recomputes BatchNorm moving statistics on the whole source set (one full-batch pass).

    MobileNetV3's BatchNorm momentum is 0.999, so a short from-scratch pretraining leaves
    the moving statistics far from the data (source test accuracy ~20 % instead of ~98 %).
    """
    layers = [layer for layer in recipes.get_backbone(model).layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(keras.ops.convert_to_tensor(x.astype("float32")), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def pretrain(x, y, quick, seed=0):
    keras.utils.set_random_seed(seed)
    if quick:
        model = recipes.build_classifier("simple_cnn", 5, x.shape[1:], widths=(8, 16), dropout=0.1)
    else:
        model = recipes.build_classifier("mobilenet_v3_small", 5, x.shape[1:], dropout=0.1, minimalistic=True)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=2 if quick else 25, verbose=0)
    recalibrate_batchnorm(model, x)
    return model


def transfer(source, method, x, y, epochs, seed, quick, learning_rate):
    """Returns (target model, trainable %) for one method."""
    kind, options, _ = METHODS[method]
    keras.utils.set_random_seed(seed)
    model = recipes.replace_head(source, 5)
    if kind in ("full_bn_affine", "bn_affine"):
        model = recipes.freeze_batchnorm_statistics(model)
    recipes.freeze_backbone(model)
    if kind not in (None, "full", "full_bn_affine", "bn_affine"):
        options = dict(options)
        if quick:
            options.update(QUICK_TARGETS)
        targets = options.pop("targets")
        model = recipes.add_adapters(model, targets, kind, **options)
    recipes.linear_probe(model, x, y, seed=seed)
    if kind == "full":
        recipes.unfreeze_backbone(model)  # BatchNorm stays frozen (inference statistics)
    elif kind == "full_bn_affine":
        recipes.unfreeze_backbone(model, train_batchnorm=True)  # FrozenBatchNormalization: affine only
    elif kind == "bn_affine":
        backbone = recipes.get_backbone(model)
        backbone.trainable = True
        for layer in backbone.layers:
            layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
    if kind is not None:
        model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=25, epochs=epochs, verbose=0, shuffle=True)
    report = recipes.adapter_parameter_report(model)
    return model, report["trainable_percent"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--labels", type=int, default=10, help="labels per target class")
    parser.add_argument("--methods", default="all", help="method names separated by ';', or all")
    parser.add_argument("--no-grid", action="store_true", help="only each method's middle learning rate")
    parser.add_argument("--lrs", default="",
                        help="override grids: 'method=lr,lr;method=lr' (runs only these methods)")
    args = parser.parse_args(argv)
    quick = args.quick
    seeds = 1 if quick else args.seeds
    epochs = 2 if quick else args.epochs
    size = 16 if quick else 32
    methods = list(METHODS) if args.methods == "all" else args.methods.split(";")
    overrides = {}
    for item in filter(None, args.lrs.split(";")):
        name, rates = item.rsplit("=", 1)
        overrides[name] = tuple(float(v) for v in rates.split(","))
    if overrides:
        methods = list(overrides)
    if quick:
        methods = ["linear probe", "full fine-tune", "bottleneck M=8 (after project convs)",
                   "conv series, full (project convs)", "LoRA r=2 (1x1 convs)",
                   "full fine-tune (BN affine, statistics frozen)", "BN affine only",
                   "conv series, full (project convs) + BN affine"]

    start = time.time()
    base = datasets.digits_source_target(image_size=size, channels=1, labels_per_class=args.labels, seed=0)
    source = pretrain(*base.source_train, quick)
    source_accuracy = recipes.evaluate_accuracy(source, *base.source_test)
    print(f"source model: test accuracy {source_accuracy:.3f} on digits 0-4 ({time.time() - start:.0f} s)",
          file=sys.stderr, flush=True)

    def grid(method):
        lrs = overrides.get(method, METHODS[method][2])
        return lrs if not (quick or args.no_grid) else (lrs[len(lrs) // 2],)

    runs = [(method, lr) for method in methods for lr in grid(method)]
    scores = {run: [] for run in runs}
    percents = {}
    for seed in range(seeds):
        split = datasets.digits_source_target(image_size=size, channels=1, labels_per_class=args.labels,
                                              seed=seed)
        for method, lr in runs:
            model, percent = transfer(source, method, *split.target_train, epochs, seed, quick, lr)
            scores[(method, lr)].append(100 * recipes.evaluate_accuracy(model, *split.target_test))
            percents[method] = percent
        print(f"seed {seed} done ({time.time() - start:.0f} s): "
              + ", ".join(f"{m} @ {lr}: {scores[(m, lr)][-1]:.1f}" for m, lr in runs), file=sys.stderr, flush=True)

    def best(method):  # the learning rate with the best mean (the same grid size for every method)
        return max(grid(method), key=lambda lr: np.mean(scores[(method, lr)]))

    reference_method = "full fine-tune" if "full fine-tune" in methods else methods[0]
    reference = np.mean(scores[(reference_method, best(reference_method))])
    rows, results = [], {}
    for method in methods:
        lr = best(method)
        values = np.asarray(scores[(method, lr)])
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        gap = values.mean() - reference
        rows.append([method, f"{percents[method]:.2f}", "-" if lr is None else f"{lr:g}",
                     f"{values.mean():.1f} ± {std:.1f}", f"{gap:+.1f}"])
        results[method] = {"accuracy": float(values.mean()), "std": float(std), "learning_rate": lr,
                           "trainable_percent": float(percents[method]), "gap_to_full": float(gap),
                           "by_learning_rate": {str(k): float(np.mean(scores[(method, k)])) for k in grid(method)}}
    backbone = "simple_cnn" if quick else "MobileNetV3Small (minimalistic, weights=None)"
    print(f"\nTarget test accuracy (%), digits 0-4 -> 5-9, {args.labels} labels/class, {backbone} at "
          f"{size} px pretrained here on the source (test acc {100 * source_accuracy:.1f} %), "
          f"{seeds} seed(s), {epochs} epochs, mean ± std, best learning rate of each method's grid")
    print_table(["method", "trainable %", "best lr", "target accuracy", "vs full FT"], rows)
    if any(len(grid(m)) > 1 for m in methods):
        print("\nMean target accuracy (%) for each learning rate of the grid")
        width = max(len(grid(m)) for m in methods)
        print_table(["method"] + [f"lr {i + 1}" for i in range(width)],
                    [[m] + [f"{lr:g}: {np.mean(scores[(m, lr)]):.1f}" for lr in grid(m)]
                     + [""] * (width - len(grid(m))) for m in methods if len(grid(m)) > 1])
    results["source_accuracy"] = source_accuracy
    results["seconds"] = time.time() - start
    return results


if __name__ == "__main__":
    main()
