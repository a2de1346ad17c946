"""Inference latency: folded adapters vs the base model vs the unfolded adapted models.

A keras.applications MobileNetV3Small classifier (minimalistic, weights=None) gets conv
adapters (series after the 1x1 project convs, parallel beside the depthwise convs), LoRA or
DoRA on the 1x1 convs, or bottleneck adapters; adapter weights are randomised (as after
training), `fold_adapters` folds the conv adapters and LoRA back and `merge_dora` DoRA. Each model runs the same batch
through a `tf.function` (inference mode); rounds interleave the models in a shuffled order (each
timed as the best of 3 back-to-back calls) and the ratio to the base is the median of the per-round ratios.

    python benchmarks/adapters_latency.py            # 96 px, batch 32, 100 rounds
    python benchmarks/adapters_latency.py --quick    # CI: 32 px, batch 4, 1 round, best of 1, 3 models timed
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer import recipes  # noqa: E402

PROJECT = r"expanded_conv(_\d+)?_project"
ONE_BY_ONE = r"expanded_conv(_\d+)?_(expand|project)|conv_1"


def randomise(model, scale=0.05, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(size=variable.shape) * scale)


def randomise_dora(model, scale=0.05, seed=0):
    """DoRA factors as `randomise`; magnitudes perturbed by `scale` around ||W0|| (kept positive)."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        noise = rng.normal(size=variable.shape) * scale
        value = variable.numpy() * (1 + noise) if "dora_magnitude" in variable.path else noise
        variable.assign(value)


def calibrate_batchnorm(model, size):
    """BatchNorm statistics from one batch of random images, so activations (and the fold check) are
    not vanishing as they are with the untrained default statistics."""
    layers = [
        layer for layer in recipes.get_backbone(model).layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in layers:
        layer.momentum = 0.0
    images = np.random.default_rng(1).uniform(0, 255, size=(64, size, size, 3)).astype("float32")
    model(tf.constant(images), training=True)
    for layer in layers:
        layer.momentum = 0.99


def build_models(size):
    keras.utils.set_random_seed(0)
    base = recipes.build_classifier("mobilenet_v3_small", 10, (size, size, 3), minimalistic=True, activation=None)
    calibrate_batchnorm(base, size)
    conv = recipes.add_adapters(base, PROJECT, "conv_series")
    conv = recipes.add_adapters(conv, keras.layers.DepthwiseConv2D, "conv_parallel", per_channel=True)
    lora = recipes.add_adapters(base, ONE_BY_ONE, "lora", rank=4)
    bottleneck = recipes.add_adapters(base, PROJECT, "bottleneck", bottleneck_dim=8)
    dora = recipes.add_adapters(base, ONE_BY_ONE, "dora", rank=4)
    for index, model in enumerate((conv, lora, bottleneck)):
        randomise(model, seed=index)
    randomise_dora(dora, seed=3)
    return (
        {
            "base": base,
            "conv adapters, folded": recipes.fold_adapters(conv),
            "LoRA, merged": recipes.fold_adapters(lora),
            "DoRA, merged": recipes.merge_dora(dora),
            "conv adapters, unfolded": conv,
            "LoRA, unmerged": lora,
            "DoRA, unmerged": dora,
            "bottleneck adapters (not foldable)": bottleneck,
        },
        conv,
        lora,
        dora,
    )


# --quick times only these (every model is still built, folded and checked; tracing dominates CI's time).
QUICK_TIMED = ("base", "conv adapters, folded", "conv adapters, unfolded")


def time_models(models, x, rounds, seed=0, repeats=3, warmup=3):
    functions = {name: tf.function(lambda t, m=model: m(t, training=False)) for name, model in models.items()}
    for fn in functions.values():
        for _ in range(warmup):
            fn(x).numpy()
    rng = np.random.default_rng(seed)
    times = {name: [] for name in functions}
    names = list(functions)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            name = names[index]
            best = float("inf")
            for _ in range(repeats):  # the best of a few back-to-back calls filters load spikes
                start = time.perf_counter()
                functions[name](x).numpy()
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    size, batch, rounds = (32, 4, 1) if args.quick else (args.size, args.batch, args.rounds)
    repeats = 1 if args.quick else 3

    models, conv, lora, dora = build_models(size)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, size=(batch, size, size, 3)).astype("float32"))
    scale = float(np.max(np.abs(conv(x))))
    errors = {  # relative to the largest adapted logit
        "conv adapters, folded": float(np.max(np.abs(models["conv adapters, folded"](x) - conv(x)))) / scale,
        "LoRA, merged": float(np.max(np.abs(models["LoRA, merged"](x) - lora(x)))) / scale,
        "DoRA, merged": float(np.max(np.abs(models["DoRA, merged"](x) - dora(x)))) / float(np.max(np.abs(dora(x)))),
    }
    shift = float(np.max(np.abs(conv(x) - models["base"](x)))) / scale
    timed = {name: m for name, m in models.items() if name in QUICK_TIMED} if args.quick else models
    times = time_models(timed, x, rounds, repeats=repeats, warmup=1 if args.quick else 3)
    base = times["base"]
    rows, results = [], {"max_abs_error": errors, "adapter_shift": shift}
    for name, model in models.items():
        params = model.count_params()
        results[name] = {"params": params}
        error = f"{errors[name]:.1e}" if name in errors else ""
        if name not in times:  # --quick: built and checked, not timed
            rows.append([name, "-", "-", f"{params:,}", error])
            continue
        ratio = statistics.median(t / b for t, b in zip(times[name], base))
        median_ms = 1000 * statistics.median(times[name])
        rows.append([name, f"{median_ms:.2f}", f"{ratio:.3f}", f"{params:,}", error])
        results[name].update(median_ms=median_ms, ratio_to_base=ratio)
    print(f"\nadapted vs base logits differ by {shift:.2f} (relative): the fold check is not vacuous")
    print(
        f"\nInference latency, MobileNetV3Small (minimalistic) classifier, {size} px, batch {batch}, "
        f"{rounds} interleaved rounds (best of {repeats} calls each), tf.function on CPU "
        f"({os.cpu_count()} cores visible)"
    )
    print_table(["model", "median ms", "ratio to base", "params", "max |folded - adapted| / max |logit|"], rows)
    return results


if __name__ == "__main__":
    main()
