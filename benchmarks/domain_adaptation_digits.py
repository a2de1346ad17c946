"""digits -> digits-M (the MNIST -> MNIST-M analogue on embedded data).

Source: scikit-learn digits (grey, replicated to RGB) with labels; target: digits-M
(the same digits blended with photo patches) without labels; evaluation on the
digits-M test split. Methods, all with the same CNN and budget, in the same run:
source-only, AdaBN (source-only + target BatchNorm statistics), TENT (source-only +
test-time entropy minimisation of the BatchNorm gammas and betas: test-batch statistics
alone, offline over the unlabelled target training images, online over the test
batches), Deep CORAL, DANN, and the train-on-target upper bound. Reports target accuracy and the share of the
gap closed, (method - source-only) / (target-only - source-only) (Ganin et al.
closed 52.9 % on MNIST -> MNIST-M).

It also splits the target test set by stroke polarity: |patch - digit| draws the stroke
as the inverted photo, so where the patch is bright the digit is darker than its
background (inverted), the opposite of every source image. Accuracy per group shows
which target images a method recovers.

    python -m benchmarks.domain_adaptation_digits [--quick] [--seeds 3] [--epochs 30]   # 1,347 thick digits
    # The reference setup of BENCHMARKS.md: MNIST-like thin strokes, 32 versions of every
    # training digit (43,104 per domain); about 18 min per seed on 2 CPU cores.
    python -m benchmarks.domain_adaptation_digits --strokes thin --copies 32 --epochs 10 --seeds 5 --max-factors 1
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer.callbacks import GradientReversalSchedule  # noqa: E402
from keras_transfer.datasets import digits as digits_lib  # noqa: E402
from keras_transfer.datasets import domain_pairs  # noqa: E402
from keras_transfer.datasets.digits_m import blend_with_photos  # noqa: E402
from keras_transfer.models import DANN  # noqa: E402
from keras_transfer.models import TENT  # noqa: E402
from keras_transfer.models import DeepCORAL  # noqa: E402
from keras_transfer.models import SourceOnly  # noqa: E402
from keras_transfer.recipes import adapt_batch_norm  # noqa: E402
from keras_transfer.schedules import InversePowerDecay  # noqa: E402


def build_parts(image_size, seed, width=32):
    """Ganin et al.'s MNIST architecture, narrowed, with BatchNorm (so AdaBN has statistics)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    feature_extractor = keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            layers.Rescaling(1.0 / 255.0),
            layers.Conv2D(width, 5, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(int(1.5 * width), 5, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(100, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
        ],
        name="feature_extractor",
    )
    label_classifier = keras.Sequential(
        [keras.Input((100,)), layers.Dense(100, activation="relu"), layers.Dense(10)],
        name="label_classifier",
    )
    return feature_extractor, label_classifier


POLARITY_GROUPS = ("normal", "inverted", "low contrast")


def stroke_polarity(digits, blended, threshold=30.0):
    """Polarity group of each digits-M image: "normal", "inverted" or "low contrast".

    `digits` are the grey source images the blend was made from (uint8, N×H×W×C) and
    `blended` the digits-M images. Contrast = mean over stroke pixels (source > 128) minus
    mean over background pixels (source < 20), averaged over channels; beyond ±`threshold`
    the image is "normal" (stroke brighter, like the source) or "inverted".
    """
    grey = np.asarray(digits, "float32")[..., 0]
    colour = np.asarray(blended, "float32").mean(axis=-1)
    stroke, background = grey > 128, grey < 20
    contrast = np.sum(colour * stroke, axis=(1, 2)) / np.maximum(stroke.sum(axis=(1, 2)), 1) - np.sum(
        colour * background, axis=(1, 2)
    ) / np.maximum(background.sum(axis=(1, 2)), 1)
    return np.where(contrast > threshold, "normal", np.where(contrast < -threshold, "inverted", "low contrast"))


def _optimizer(lr, total_steps):
    return keras.optimizers.SGD(InversePowerDecay(lr, total_steps), momentum=0.9)


def tent_predictions(source_only, xt, xt_test, lr, batch_size, epochs=1):
    """Target-test logits of TENT started from the trained source-only model (copied, not changed).

    "BN (test batches)": no step, BatchNorm on each test batch's statistics; "TENT (offline)":
    `epochs` over the unlabelled target training images, then the test set; "TENT (online)":
    from the start again, one step on each test batch, then its predictions (the paper's setting).
    Adam, as Wang et al. use for digits and CIFAR; every prediction in batches of `batch_size`.
    """
    parts = [keras.Input(xt.shape[1:]), source_only.feature_extractor, source_only.label_classifier]
    tent = TENT(keras.Sequential(parts))
    tent.compile(optimizer=keras.optimizers.Adam(lr))
    outputs = {"BN (test batches)": tent.predict(xt_test, batch_size=batch_size, verbose=0)}
    tent.fit(xt, batch_size=batch_size, epochs=epochs, verbose=0)
    outputs["TENT (offline)"] = tent.predict(xt_test, batch_size=batch_size, verbose=0)
    tent.reset()
    outputs["TENT (online)"] = tent.adapt_and_predict(xt_test, batch_size=batch_size)
    return outputs


def run_seed(
    data,
    seed,
    epochs,
    batch_size,
    image_size,
    lr,
    dann_weight,
    coral_weight,
    max_factors=(1.0,),
    verbose=0,
    tent=(1e-3, 128),
):
    (xs, ys), (xt, _), (xt_test, yt_test), (xs_test, ys_test), (xt_labelled, yt_labelled) = data
    pairs = domain_pairs(xs, ys, xt, batch_size=batch_size, seed=seed)
    steps = epochs * int(pairs.cardinality())
    val = domain_pairs(xs_test, ys_test, xt_test, batch_size=256, shuffle=False)
    results, history, by_group = {}, {}, {}
    groups = stroke_polarity(xs_test, xt_test)  # digits-M test image i blends digits test image i

    def target_accuracy(model, name, logits=None):
        logits = model.predict(xt_test, batch_size=256, verbose=0) if logits is None else logits
        correct = np.argmax(logits, axis=-1) == yt_test
        by_group[name] = {g: float(correct[groups == g].mean()) for g in POLARITY_GROUPS if np.any(groups == g)}
        return float(correct.mean())

    fe, lc = build_parts(image_size, seed)
    source_only = SourceOnly(fe, lc)
    source_only.compile(optimizer=_optimizer(lr, steps))
    source_only.fit(pairs, epochs=epochs, verbose=verbose)
    results["source-only"] = target_accuracy(source_only, "source-only")
    tent_logits = tent_predictions(source_only, xt, xt_test, *tent)  # before AdaBN changes source_only
    adapt_batch_norm(source_only, xt, batch_size=2048, layerwise=True)  # exact AdaBN, bounded memory
    results["AdaBN"] = target_accuracy(source_only, "AdaBN")
    for name, logits in tent_logits.items():
        results[name] = target_accuracy(None, name, logits)

    fe, lc = build_parts(image_size, seed)
    coral = DeepCORAL(fe, lc, coral_weight=coral_weight, coral_on="features")
    coral.compile(optimizer=_optimizer(lr, steps))
    coral.fit(pairs, epochs=epochs, verbose=verbose)
    results["Deep CORAL"] = target_accuracy(coral, "Deep CORAL")

    for max_factor in max_factors:
        fe, lc = build_parts(image_size, seed)
        dann = DANN(fe, lc, factor=0.0, domain_loss_weight=dann_weight)
        dann.compile(optimizer=_optimizer(lr, steps))
        h = dann.fit(
            pairs,
            validation_data=val,
            epochs=epochs,
            verbose=verbose,
            callbacks=[GradientReversalSchedule(max_factor=max_factor)],
        )
        name = f"DANN (λ→{max_factor:g})"
        results[name] = target_accuracy(dann, name)
        history[name] = {k: h.history[k] for k in ("domain_accuracy", "val_domain_accuracy", "val_label_accuracy")}

    fe, lc = build_parts(image_size, seed)
    target_only = SourceOnly(fe, lc)
    target_only.compile(optimizer=_optimizer(lr, steps))
    target_pairs = domain_pairs(xt_labelled, yt_labelled, xt_labelled[:1], batch_size=batch_size, seed=seed)
    target_only.fit(target_pairs, epochs=epochs, verbose=verbose)
    results["target-only"] = target_accuracy(target_only, "target-only")
    return results, history, by_group


def thin_strokes(digits8, image_size, erosion=2):
    """MNIST-like thin strokes from 8x8 uint8 digits (N×8×8×1): bicubic upsampling, threshold at
    0.45 of each image's maximum, binary erosion, a light blur; uint8 N×S×S×1 in [0, 255]."""
    import tensorflow as tf
    from scipy import ndimage

    up = tf.image.resize(np.asarray(digits8, "float32"), (image_size, image_size), method="bicubic").numpy()[..., 0]
    out = np.empty(up.shape, "float32")
    for i, image in enumerate(up):
        core = ndimage.binary_erosion(image > 0.45 * image.max(), iterations=erosion)
        blurred = ndimage.gaussian_filter(core.astype("float32"), 0.7)
        out[i] = 255.0 * blurred / max(float(blurred.max()), 1e-6)
    return np.clip(np.round(out), 0, 255).astype("uint8")[..., None]


def affine_copies(x, copies, seed=0):
    """`x` (uint8 N×S×S×1) followed by `copies - 1` random affine variants of every image
    (rotation ±15°, scale 0.9-1.1, shear ±0.2, shift ±2 px; bilinear)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    size = x.shape[1]
    centre = np.full(2, (size - 1) / 2.0)
    out = [x]
    for _ in range(copies - 1):
        variants = np.empty(x.shape, "float32")
        for i, image in enumerate(x[..., 0].astype("float32")):
            angle, scale, shear = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(0.9, 1.1), rng.uniform(-0.2, 0.2)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            matrix = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) / scale
            offset = centre - matrix @ centre + rng.uniform(-2, 2, 2)
            variants[i, ..., 0] = ndimage.affine_transform(image, matrix, offset=offset, order=1)
        out.append(np.clip(np.round(variants), 0, 255).astype("uint8"))
    return np.concatenate(out)


def load(image_size, quick, strokes="original", copies=1):
    """Source / target / test arrays. `strokes="thin"` rebuilds both domains (and the test sets)
    from `thin_strokes` digits; `copies > 1` adds affine variants of every training digit to the
    source and, blended with fresh photo patches, to the unlabelled target."""
    if strokes == "thin":
        x8, y = digits_lib.digit_images(8, channels=1)
        x = thin_strokes(x8, image_size)
    else:
        x, y = digits_lib.digit_images(image_size, channels=1)
    train, test = digits_lib.split_indices(y)
    blended = blend_with_photos(x, seed=0)  # what load_digits_m(image_size) does
    xs, ys, xt = x[train], y[train], blended[train]
    if copies > 1:
        extra = affine_copies(xs, copies, seed=123)[len(xs) :]
        xs, ys = np.concatenate([xs, extra]), np.tile(ys, copies)
        xt = np.concatenate([xt, blend_with_photos(extra, seed=7)])
    rgb = lambda a: np.repeat(a, 3, axis=-1)  # noqa: E731
    xs, xs_test, xt_test, yt_test, ys_test = rgb(xs), rgb(x[test]), blended[test], y[test], y[test]
    if quick:
        xs, ys, xt = xs[:128], ys[:128], xt[:128]
        xt_test, yt_test, xs_test, ys_test = xt_test[:128], yt_test[:128], xs_test[:128], ys_test[:128]
    # target-only trains on the labelled digits-M training images (an upper bound).
    return (xs, ys), (xt, None), (xt_test, yt_test), (xs_test, ys_test), (xt, ys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first-seed, ..., first-seed + seeds - 1 (to add seeds to an earlier run)",
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--dann-weight", type=float, default=1.0)
    parser.add_argument("--coral-weight", type=float, default=1.0)
    parser.add_argument("--tent-lr", type=float, default=1e-3, help="TENT's Adam learning rate")
    parser.add_argument("--tent-batch-size", type=int, default=128, help="TENT's adaptation and test batch size")
    parser.add_argument("--max-factors", default="1,0.1", help="Final λ of each DANN run (comma-separated).")
    parser.add_argument(
        "--strokes",
        choices=("original", "thin"),
        default="original",
        help="thin: both domains from MNIST-like thin-stroke digits (thin_strokes)",
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="training digits in this many versions (the original + random affine variants)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.image_size = 1, 1, 16
    if args.first_seed < 0:
        raise ValueError(f"`--first-seed` must be at least 0. Received: first_seed={args.first_seed}")
    if args.copies < 1:
        raise ValueError(f"`--copies` must be at least 1. Received: copies={args.copies}")
    data = load(args.image_size, args.quick, strokes=args.strokes, copies=args.copies)
    start = time.time()
    per_seed, histories, groups = [], [], []
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for seed in seeds:
        results, history, by_group = run_seed(
            data,
            seed,
            args.epochs,
            args.batch_size,
            args.image_size,
            args.lr,
            args.dann_weight,
            args.coral_weight,
            max_factors=tuple(float(v) for v in args.max_factors.split(",")),
            tent=(args.tent_lr, args.tent_batch_size),
        )
        per_seed.append(results)
        histories.append(history)
        groups.append(by_group)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()), flush=True)
    methods = list(per_seed[0])
    mean = {m: float(np.mean([r[m] for r in per_seed])) for m in methods}
    std = {m: float(np.std([r[m] for r in per_seed])) for m in methods}
    low, high = mean["source-only"], mean["target-only"]
    gap = {m: (mean[m] - low) / (high - low) if high > low else float("nan") for m in methods}
    print(
        f"\ndigits -> digits-M ({args.strokes} strokes, {len(data[0][0])} source / target training images), "
        f"{args.seeds} seeds, {args.epochs} epochs, {args.image_size}px "
        f"({time.time() - start:.0f} s)\n"
    )
    print("| method | target accuracy (mean ± std) | gap closed |")
    print("| --- | --- | --- |")
    for m in methods:
        print(f"| {m} | {mean[m]:.3f} ± {std[m]:.3f} | {100 * gap[m]:.1f} % |")
    counts = {g: int(np.sum(stroke_polarity(data[3][0], data[2][0]) == g)) for g in POLARITY_GROUPS}
    print(
        "\nTarget accuracy by stroke polarity (mean over seeds; test images per group: "
        + ", ".join(f"{g} {n}" for g, n in counts.items())
        + ")\n"
    )
    present = [g for g in POLARITY_GROUPS if counts[g]]
    print("| method | " + " | ".join(present) + " |")
    print("| --- |" + " --- |" * len(present))
    polarity = {m: {g: float(np.mean([r[m][g] for r in groups])) for g in present} for m in methods}
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{polarity[m][g]:.3f}" for g in present) + " |")
    print("\nGap closed per seed (each seed's own source-only and target-only):\n")
    gap_per_seed = {}
    for m in methods[1:-1]:
        gap_per_seed[m] = [
            (r[m] - r["source-only"]) / (r["target-only"] - r["source-only"])
            if r["target-only"] > r["source-only"]
            else float("nan")
            for r in per_seed
        ]
        print(f"  {m}: " + ", ".join(f"seed {s} {100 * g:.1f} %" for s, g in zip(seeds, gap_per_seed[m])))
    for name, h in histories[0].items():
        print(f"\n{name} per epoch (seed {seeds[0]}): train domain acc / val domain acc / source val acc")
        n = len(h["domain_accuracy"])
        for epoch in range(n):
            if epoch % max(1, n // 10) == 0 or epoch == n - 1:
                print(
                    f"  epoch {epoch + 1}: {h['domain_accuracy'][epoch]:.3f} / "
                    f"{h['val_domain_accuracy'][epoch]:.3f} / {h['val_label_accuracy'][epoch]:.3f}"
                )
    return {
        "mean": mean,
        "std": std,
        "gap_closed": gap,
        "per_seed": per_seed,
        "seeds": list(seeds),
        "gap_closed_per_seed": gap_per_seed,
        "history": histories,
        "polarity": polarity,
        "polarity_counts": counts,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
