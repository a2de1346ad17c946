"""Adapters vs full fine-tuning vs LoRA / DoRA vs linear probe on digits 0-4 -> 5-9 (few labels).

A keras.applications MobileNetV3Small (minimalistic, weights=None) is pretrained here on the
digits source task (0-4, all labels), then transferred to the target task (5-9, `--labels` per
class, 10 by default) by each method in the same run; every method starts from the same convex linear-probe
head (LP-FT style), so only what trains differs.

Two protocols:

* `--protocol strong` (default, the main one): the source model is pretrained on digits 0-4 from
  plain digits AND digits-M converted to grey, with light augmentation (random translation and
  zoom in the input pipeline, not in the transferred model), up to 40 epochs; every 5 epochs a
  convex linear probe is fitted on the target training labels and scored on a disjoint target
  VALIDATION split (as many more labels per class from the target training pool), and the epoch with
  the best mean validation probe accuracy is kept. Each method's learning rate is picked on the
  validation mean over seeds; test accuracy is reported at that rate.
* `--protocol scratch` (the older tables): plain digits only, 25 epochs, last epoch kept,
  learning rate picked on the test mean (optimistic, equally so for every method).

    python benchmarks/adapters_transfer.py                       # strong protocol, 5 seeds
    python benchmarks/adapters_transfer.py --protocol scratch    # the from-scratch protocol
    python benchmarks/adapters_transfer.py --labels 40           # 40 labels/class (+40 validation)
    python benchmarks/adapters_transfer.py --no-grid             # each method's middle rate only
    python benchmarks/adapters_transfer.py --quick               # CI: simple_cnn, 1 seed, tiny epochs
"""

import argparse
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer import datasets  # noqa: E402
from keras_transfer import recipes  # noqa: E402

PROJECT = r"expanded_conv(_\d+)?_project"
ONE_BY_ONE = r"expanded_conv(_\d+)?_(expand|project)|conv_1"
CONVS = [keras.layers.Conv2D, keras.layers.DepthwiseConv2D]

# name -> (kind, add_adapters kwargs (targets included), learning-rate grid); the middle rate is
# the default (--no-grid, --quick). None kind: no training after the probe.
METHODS = {
    "linear probe": (None, {}, (None,)),
    "full fine-tune": ("full", {}, (3e-4, 1e-3, 3e-3)),
    "bottleneck M=8 (after project convs)": (
        "bottleneck",
        {"targets": PROJECT, "bottleneck_dim": 8},
        (1e-3, 3e-3, 1e-2),
    ),
    "conv series, per-channel (all convs)": (
        "conv_series",
        {"targets": CONVS, "per_channel": True},
        (3e-3, 1e-2, 3e-2),
    ),
    "conv series, full (project convs)": ("conv_series", {"targets": PROJECT}, (1e-3, 3e-3, 1e-2)),
    "conv parallel, per-channel (depthwise)": (
        "conv_parallel",
        {"targets": keras.layers.DepthwiseConv2D, "per_channel": True},
        (3e-3, 1e-2, 3e-2),
    ),
    "LoRA r=2 (1x1 convs)": ("lora", {"targets": ONE_BY_ONE, "rank": 2}, (1e-3, 3e-3, 1e-2)),
    "DoRA r=2 (1x1 convs)": ("dora", {"targets": ONE_BY_ONE, "rank": 2}, (1e-3, 3e-3, 1e-2)),
    # BatchNorm affine training: every BatchNormalization becomes a FrozenBatchNormalization
    # (gamma/beta train, the pretraining statistics stay: inference mode inside fit).
    "full fine-tune (BN affine, statistics frozen)": ("full_bn_affine", {}, (1e-3, 3e-3, 1e-2)),
    "BN affine only": ("bn_affine", {}, (3e-3, 1e-2, 3e-2)),
    "conv series, full (project convs) + BN affine": (
        "conv_series",
        {"targets": PROJECT, "train_batchnorm": "affine"},
        (3e-3, 1e-2, 3e-2),
    ),
    "conv parallel, per-channel (depthwise) + BN affine": (
        "conv_parallel",
        {"targets": keras.layers.DepthwiseConv2D, "per_channel": True, "train_batchnorm": "affine"},
        (3e-3, 1e-2, 3e-2),
    ),
}
QUICK_TARGETS = {"targets": r"block\d_conv"}


def small_project_convs(layer):
    """The `expanded_conv*_project` 1x1 convs with at most 48 output channels (a full C x C
    series adapter after the 96-channel ones alone would cost ~6 % of the parameters)."""
    return re.fullmatch(PROJECT, layer.name) is not None and layer.filters <= 48


# The strong protocol's methods: every trained method gets a 3-rate grid, centred where the
# scratch protocol's grids peaked (a rate on the edge there moved the grid one step out).
STRONG_METHODS = {
    "linear probe": (None, {}, (None,)),
    "full fine-tune": ("full", {}, (3e-4, 1e-3, 3e-3)),
    "BN affine only": ("bn_affine", {}, (1e-2, 3e-2, 1e-1)),
    "conv parallel, per-channel (depthwise) + BN affine": (
        "conv_parallel",
        {"targets": keras.layers.DepthwiseConv2D, "per_channel": True, "train_batchnorm": "affine"},
        (3e-3, 1e-2, 3e-2),
    ),
    "conv series, full (project convs <= 48 ch)": ("conv_series", {"targets": small_project_convs}, (3e-3, 1e-2, 3e-2)),
    "conv series, per-channel (all convs)": (
        "conv_series",
        {"targets": CONVS, "per_channel": True},
        (1e-2, 3e-2, 1e-1),
    ),
    "bottleneck M=8 (after project convs)": (
        "bottleneck",
        {"targets": PROJECT, "bottleneck_dim": 8},
        (1e-2, 3e-2, 1e-1),
    ),
    "LoRA r=2 (1x1 convs)": ("lora", {"targets": ONE_BY_ONE, "rank": 2}, (3e-3, 1e-2, 3e-2)),
    # DoRA (Liu et al. 2024) at LoRA's rank, targets and grid: a magnitude per output filter on top.
    "DoRA r=2 (1x1 convs)": ("dora", {"targets": ONE_BY_ONE, "rank": 2}, (3e-3, 1e-2, 3e-2)),
    # The recommended default configuration (adapters + normalisation parameters + head), added after
    # the table above was seen: 4.7 % trainable.
    "conv series, per-channel (all convs) + BN affine": (
        "conv_series",
        {"targets": CONVS, "per_channel": True, "train_batchnorm": "affine"},
        (1e-2, 3e-2, 1e-1),
    ),
}


def recalibrate_batchnorm(model, x):
    """Recomputes BatchNorm moving statistics on the whole source set (one full-batch pass).

    MobileNetV3's BatchNorm momentum is 0.999, so a short from-scratch pretraining leaves
    the moving statistics far from the data (source test accuracy ~20 % instead of ~98 %).
    """
    layers = [
        layer for layer in recipes.get_backbone(model).layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(keras.ops.convert_to_tensor(x.astype("float32")), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def parse_lr_overrides(text):
    """`--lrs` text 'method=lr,lr;method=lr' -> {method: (lr, ...)}."""
    overrides = {}
    for item in filter(None, text.split(";")):
        name, rates = item.rsplit("=", 1)
        overrides[name] = tuple(float(v) for v in rates.split(","))
    return overrides


def source_classifier(input_shape, quick, seed):
    """The untrained, compiled source classifier of both protocols (simple_cnn under --quick)."""
    keras.utils.set_random_seed(seed)
    if quick:
        model = recipes.build_classifier("simple_cnn", 5, input_shape, widths=(8, 16), dropout=0.1)
    else:
        model = recipes.build_classifier("mobilenet_v3_small", 5, input_shape, dropout=0.1, minimalistic=True)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    return model


def pretrain(x, y, quick, seed=0):
    model = source_classifier(x.shape[1:], quick, seed)
    model.fit(x, y, batch_size=32, epochs=2 if quick else 25, verbose=0)
    recalibrate_batchnorm(model, x)
    return model


def transfer(source, method, x, y, epochs, seed, quick, learning_rate, methods=None):
    """Returns (target model, trainable %) for one method of `methods` (default METHODS)."""
    kind, options, _ = (methods or METHODS)[method]
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


def to_grey(x):
    """uint8 NHWC RGB -> uint8 NHWC with one grey channel (mean over the channels)."""
    return np.clip(np.round(x.astype("float32").mean(axis=-1, keepdims=True)), 0, 255).astype("uint8")


def strong_source_data(size, classes=(0, 1, 2, 3, 4)):
    """Source task of the strong protocol: digits 0-4 from plain digits and grey digits-M.

    Returns (train, {"digits": test, "digits-M (grey)": test}); the split is `load_digits`'s
    with seed 0 (the one the source side of `digits_source_target(seed=0)` uses).
    """
    (xd, yd), (xdt, ydt) = datasets.load_digits(size, channels=1, seed=0)
    (xm, ym), (xmt, ymt) = datasets.load_digits_m(size, seed=0)
    keep = lambda y: np.isin(y, classes)  # noqa: E731 (labels 0-4 are their own indices)
    x = np.concatenate([xd[keep(yd)], to_grey(xm[keep(ym)])])
    y = np.concatenate([yd[keep(yd)], ym[keep(ym)]])
    tests = {"digits": (xdt[keep(ydt)], ydt[keep(ydt)]), "digits-M (grey)": (to_grey(xmt[keep(ymt)]), ymt[keep(ymt)])}
    return (x, y), tests


def target_split_with_validation(size, labels, seed):
    """The target side of `digits_source_target` on the seed-0 train/test split, plus validation.

    `seed` draws the training labels (as `split_source_target(..., seed=seed)` does).

    The validation split is `labels` more images per target class from the target TRAINING pool,
    disjoint from the training labels (the next `labels` of the same per-class permutation that
    `split_source_target` draws the training labels from); the test split is untouched.
    """
    # One train/test split for every seed (seed 0, the source model's): a seed only redraws the
    # labelled images, so no seed's validation image is another seed's test image.
    train, test = datasets.load_digits(size, channels=1, seed=0)
    split = datasets.split_source_target(train, test, (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), labels, seed)
    x_train, y_train = train
    rng = np.random.default_rng(seed)  # replays split_source_target's draw
    chosen, held = [], []
    for c in split.target_classes:
        idx = rng.permutation(np.flatnonzero(y_train == c))
        if 2 * labels > len(idx):
            raise ValueError(
                f"`labels` must be at most {len(idx) // 2} (class {c} has {len(idx)} training images, "
                f"and validation takes as many images as training). Received: labels={labels}"
            )
        chosen.append(idx[:labels])
        held.append(idx[labels : 2 * labels])
    chosen, held = np.sort(np.concatenate(chosen)), np.sort(np.concatenate(held))
    if not np.array_equal(x_train[chosen], split.target_train[0]):
        raise AssertionError("the replayed draw does not match the split's training labels")
    if np.intersect1d(chosen, held).size:
        raise AssertionError("validation overlaps the training labels")
    lookup = {c: i for i, c in enumerate(split.target_classes)}
    y_val = np.array([lookup[int(v)] for v in y_train[held]], dtype="int64")
    return split, (x_train[held], y_val)


def augmentation(seed=0):
    """Light augmentation for pretraining only (applied in the tf.data pipeline)."""
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
        ]
    )


def probe_validation_accuracy(model, splits):
    """Mean over seeds of a convex linear probe's target validation accuracy (%)."""
    scores = []
    for seed, (split, (x_val, y_val)) in enumerate(splits):
        probe = recipes.replace_head(model, len(split.target_classes), copy=False)
        recipes.linear_probe(probe, *split.target_train, seed=seed)
        scores.append(100 * recipes.evaluate_accuracy(probe, x_val, y_val))
    return float(np.mean(scores))


def pretrain_strong(x, y, splits, quick, epochs=40, every=5, seed=0):
    """Pretrains with augmentation; keeps the checkpoint with the best validation probe accuracy.

    Returns (model, log) where log lists (epoch, validation probe accuracy) per checkpoint.
    """
    import tensorflow as tf

    model = source_classifier(x.shape[1:], quick, seed)
    augment = augmentation(seed)
    data = (
        tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(32)
        # Sequential map: the augmentation layers' seed generators then draw in a fixed
        # order, so a rerun pretrains the same source model (a parallel map does not).
        .map(lambda a, b: (augment(a, training=True), b))
        .prefetch(tf.data.AUTOTUNE)
    )
    best, best_weights, log = -1.0, None, []
    for epoch in range(every, epochs + 1, every):
        model.fit(data, epochs=every, verbose=0)
        recalibrate_batchnorm(model, x)
        score = probe_validation_accuracy(model, splits)
        log.append((epoch, score))
        print(f"  pretraining epoch {epoch}: validation probe accuracy {score:.1f}", file=sys.stderr, flush=True)
        if score > best:
            best, best_weights = score, model.get_weights()
    model.set_weights(best_weights)
    return model, log


def run_strong(args):
    quick = args.quick
    seeds = 1 if quick else args.seeds
    epochs = 2 if quick else args.epochs
    size = 16 if quick else 32
    table = STRONG_METHODS
    methods = list(table) if args.methods == "all" else args.methods.split(";")
    if quick:  # simple_cnn has no conv with as many input as output channels: no per-channel adapters
        methods = [m for m in methods if not table[m][1].get("per_channel")]
        if args.methods == "all":  # LoRA, DoRA and bottleneck adapters run in the scratch protocol's --quick
            methods = [m for m in methods if table[m][0] in (None, "full", "bn_affine", "conv_series")]
    overrides = parse_lr_overrides(args.lrs)

    start = time.time()
    splits = [target_split_with_validation(size, args.labels, seed) for seed in range(seeds)]
    (x_source, y_source), source_tests = strong_source_data(size)
    source, log = pretrain_strong(
        x_source,
        y_source,
        splits,
        quick,
        epochs=2 if quick else args.source_epochs,
        every=1 if quick else args.probe_every,
        seed=args.source_seed,
    )
    chosen_epoch = max(log, key=lambda item: item[1])[0]
    source_accuracy = {name: recipes.evaluate_accuracy(source, *xy) for name, xy in source_tests.items()}
    print(
        f"source model: epoch {chosen_epoch} kept, test accuracy "
        + ", ".join(f"{k} {v:.3f}" for k, v in source_accuracy.items())
        + f" ({time.time() - start:.0f} s)",
        file=sys.stderr,
        flush=True,
    )

    def grid(method):
        lrs = overrides.get(method, table[method][2])
        return lrs if not (quick or args.no_grid) else (lrs[len(lrs) // 2],)

    runs = [(method, lr) for method in methods for lr in grid(method)]
    val = {run: [] for run in runs}
    test = {run: [] for run in runs}
    percents = {}
    for seed, (split, (x_val, y_val)) in enumerate(splits):
        for method, lr in runs:
            model, percent = transfer(source, method, *split.target_train, epochs, seed, quick, lr, methods=table)
            val[(method, lr)].append(100 * recipes.evaluate_accuracy(model, x_val, y_val))
            test[(method, lr)].append(100 * recipes.evaluate_accuracy(model, *split.target_test))
            percents[method] = percent
        print(
            f"seed {seed} done ({time.time() - start:.0f} s): "
            + ", ".join(f"{m} @ {lr}: val {val[(m, lr)][-1]:.1f} test {test[(m, lr)][-1]:.1f}" for m, lr in runs),
            file=sys.stderr,
            flush=True,
        )

    def best(method):  # picked on the VALIDATION mean; the first rate wins ties
        return max(grid(method), key=lambda lr: np.mean(val[(method, lr)]))

    def std(values):
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    reference_method = "full fine-tune" if "full fine-tune" in methods else methods[0]
    reference = np.asarray(test[(reference_method, best(reference_method))])
    rows, results = [], {}
    for method in methods:
        lr = best(method)
        v, t = np.asarray(val[(method, lr)]), np.asarray(test[(method, lr)])
        paired = t - reference
        rows.append(
            [
                method,
                f"{percents[method]:.2f}",
                "-" if lr is None else f"{lr:g}",
                f"{v.mean():.1f}",
                f"{t.mean():.1f} ± {std(t):.1f}",
                f"{t.mean() - reference.mean():+.1f}",
                f"{paired.mean():+.1f} ± {std(paired):.1f}",
            ]
        )
        results[method] = {
            "accuracy": float(t.mean()),
            "std": std(t),
            "validation_accuracy": float(v.mean()),
            "learning_rate": lr,
            "trainable_percent": float(percents[method]),
            "gap_to_full": float(t.mean() - reference.mean()),
            "paired_gap": float(paired.mean()),
            "paired_std": std(paired),
            "test_by_seed": [float(a) for a in t],
            "by_learning_rate": {
                str(k): {"validation": float(np.mean(val[(method, k)])), "test": float(np.mean(test[(method, k)]))}
                for k in grid(method)
            },
        }
    backbone = "simple_cnn" if quick else "MobileNetV3Small (minimalistic, weights=None)"
    print(
        f"\nStrong protocol: digits 0-4 (digits + grey digits-M, augmented) -> 5-9, {args.labels} labels/class "
        f"(+{args.labels}/class validation), {backbone} at {size} px, source epoch {chosen_epoch} kept on the "
        f"validation probe, {seeds} seed(s), {epochs} epochs; lr picked on the validation mean; test mean ± std"
    )
    print_table(["method", "trainable %", "lr (val)", "val acc", "test acc", "vs full FT", "paired"], rows)
    if any(len(grid(m)) > 1 for m in methods):
        print("\nMean validation / test accuracy (%) for each learning rate of the grid")
        width = max(len(grid(m)) for m in methods)
        print_table(
            ["method"] + [f"lr {i + 1}" for i in range(width)],
            [
                [m]
                + [f"{lr:g}: {np.mean(val[(m, lr)]):.1f} / {np.mean(test[(m, lr)]):.1f}" for lr in grid(m)]
                + [""] * (width - len(grid(m)))
                for m in methods
                if len(grid(m)) > 1
            ],
        )
    print("\nSource checkpoints (epoch: validation probe accuracy): " + ", ".join(f"{e}: {a:.1f}" for e, a in log))
    results["source_accuracy"] = float(np.mean(list(source_accuracy.values())))
    results["source_accuracy_by_set"] = source_accuracy
    results["source_checkpoints"] = log
    results["source_epoch"] = chosen_epoch
    results["seconds"] = time.time() - start
    print(f"wall time {results['seconds']:.0f} s")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--protocol",
        choices=("strong", "scratch"),
        default="strong",
        help="strong (default): augmented digits + grey digits-M pretraining, checkpoint and "
        "learning rate chosen on a target validation split; scratch: the older protocol",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--source-epochs", type=int, default=40, help="strong protocol: pretraining epochs")
    parser.add_argument(
        "--source-seed",
        type=int,
        default=0,
        help="strong protocol: seed of the source pretraining (initialisation, order, augmentation)",
    )
    parser.add_argument(
        "--probe-every", type=int, default=5, help="strong protocol: epochs between validation-probe checkpoints"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--labels", type=int, default=10, help="labels per target class")
    parser.add_argument("--methods", default="all", help="method names separated by ';', or all")
    parser.add_argument("--no-grid", action="store_true", help="only each method's middle learning rate")
    parser.add_argument(
        "--lrs", default="", help="override grids: 'method=lr,lr;method=lr' (scratch: runs only these methods)"
    )
    args = parser.parse_args(argv)
    if args.protocol == "strong":
        return run_strong(args)
    quick = args.quick
    seeds = 1 if quick else args.seeds
    epochs = 2 if quick else args.epochs
    size = 16 if quick else 32
    methods = list(METHODS) if args.methods == "all" else args.methods.split(";")
    overrides = parse_lr_overrides(args.lrs)
    if overrides:
        methods = list(overrides)
    if quick:
        methods = [
            "linear probe",
            "full fine-tune",
            "bottleneck M=8 (after project convs)",
            "conv series, full (project convs)",
            "LoRA r=2 (1x1 convs)",
            "DoRA r=2 (1x1 convs)",
            "full fine-tune (BN affine, statistics frozen)",
            "BN affine only",
            "conv series, full (project convs) + BN affine",
        ]

    start = time.time()
    base = datasets.digits_source_target(image_size=size, channels=1, labels_per_class=args.labels, seed=0)
    source = pretrain(*base.source_train, quick)
    source_accuracy = recipes.evaluate_accuracy(source, *base.source_test)
    print(
        f"source model: test accuracy {source_accuracy:.3f} on digits 0-4 ({time.time() - start:.0f} s)",
        file=sys.stderr,
        flush=True,
    )

    def grid(method):
        lrs = overrides.get(method, METHODS[method][2])
        return lrs if not (quick or args.no_grid) else (lrs[len(lrs) // 2],)

    runs = [(method, lr) for method in methods for lr in grid(method)]
    scores = {run: [] for run in runs}
    percents = {}
    for seed in range(seeds):
        split = datasets.digits_source_target(image_size=size, channels=1, labels_per_class=args.labels, seed=seed)
        for method, lr in runs:
            model, percent = transfer(source, method, *split.target_train, epochs, seed, quick, lr)
            scores[(method, lr)].append(100 * recipes.evaluate_accuracy(model, *split.target_test))
            percents[method] = percent
        print(
            f"seed {seed} done ({time.time() - start:.0f} s): "
            + ", ".join(f"{m} @ {lr}: {scores[(m, lr)][-1]:.1f}" for m, lr in runs),
            file=sys.stderr,
            flush=True,
        )

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
        rows.append(
            [
                method,
                f"{percents[method]:.2f}",
                "-" if lr is None else f"{lr:g}",
                f"{values.mean():.1f} ± {std:.1f}",
                f"{gap:+.1f}",
            ]
        )
        results[method] = {
            "accuracy": float(values.mean()),
            "std": float(std),
            "learning_rate": lr,
            "trainable_percent": float(percents[method]),
            "gap_to_full": float(gap),
            "by_learning_rate": {str(k): float(np.mean(scores[(method, k)])) for k in grid(method)},
        }
    backbone = "simple_cnn" if quick else "MobileNetV3Small (minimalistic, weights=None)"
    print(
        f"\nTarget test accuracy (%), digits 0-4 -> 5-9, {args.labels} labels/class, {backbone} at "
        f"{size} px pretrained here on the source (test acc {100 * source_accuracy:.1f} %), "
        f"{seeds} seed(s), {epochs} epochs, mean ± std, best learning rate of each method's grid"
    )
    print_table(["method", "trainable %", "best lr", "target accuracy", "vs full FT"], rows)
    if any(len(grid(m)) > 1 for m in methods):
        print("\nMean target accuracy (%) for each learning rate of the grid")
        width = max(len(grid(m)) for m in methods)
        print_table(
            ["method"] + [f"lr {i + 1}" for i in range(width)],
            [
                [m] + [f"{lr:g}: {np.mean(scores[(m, lr)]):.1f}" for lr in grid(m)] + [""] * (width - len(grid(m)))
                for m in methods
                if len(grid(m)) > 1
            ],
        )
    results["source_accuracy"] = source_accuracy
    results["seconds"] = time.time() - start
    return results


if __name__ == "__main__":
    main()
