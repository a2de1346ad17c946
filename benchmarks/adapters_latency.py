"""Inference latency: folded adapters vs the base model vs the unfolded adapted models.

A keras.applications MobileNetV3Small classifier (minimalistic, weights=None) gets conv
adapters (series after the 1x1 project convs, parallel beside the depthwise convs), LoRA on
the 1x1 convs, or bottleneck adapters; adapter weights are randomised (as after training)
and `fold_adapters` folds the conv adapters and LoRA back. Each model runs the same batch
through a `tf.function` (inference mode); rounds interleave the models in a shuffled order
and the ratio to the base is the median of the per-round ratios.

    python benchmarks/adapters_latency.py            # 96 px, batch 32, 40 rounds
    python benchmarks/adapters_latency.py --quick    # CI: 32 px, batch 4, 5 rounds
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transfer import recipes  # noqa: E402
from keras_transfer.demos.report import print_table  # noqa: E402

PROJECT = r"expanded_conv(_\d+)?_project"
ONE_BY_ONE = r"expanded_conv(_\d+)?_(expand|project)|conv_1"


def randomise(model, scale=0.02, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(size=variable.shape) * scale)


def build_models(size):
    keras.utils.set_random_seed(0)
    base = recipes.build_classifier("mobilenet_v3_small", 10, (size, size, 3), minimalistic=True, activation=None)
    conv = recipes.add_adapters(base, PROJECT, "conv_series")
    conv = recipes.add_adapters(conv, keras.layers.DepthwiseConv2D, "conv_parallel", per_channel=True)
    lora = recipes.add_adapters(base, ONE_BY_ONE, "lora", rank=4)
    bottleneck = recipes.add_adapters(base, PROJECT, "bottleneck", bottleneck_dim=8)
    for index, model in enumerate((conv, lora, bottleneck)):
        randomise(model, seed=index)
    return {
        "base": base,
        "conv adapters, folded": recipes.fold_adapters(conv),
        "LoRA, merged": recipes.fold_adapters(lora),
        "conv adapters, unfolded": conv,
        "LoRA, unmerged": lora,
        "bottleneck adapters (not foldable)": bottleneck,
    }, conv, lora


def time_models(models, x, rounds, seed=0):
    functions = {name: tf.function(lambda t, m=model: m(t, training=False)) for name, model in models.items()}
    for fn in functions.values():
        for _ in range(3):
            fn(x).numpy()
    rng = np.random.default_rng(seed)
    times = {name: [] for name in functions}
    names = list(functions)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            name = names[index]
            start = time.perf_counter()
            functions[name](x).numpy()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    size, batch, rounds = (32, 4, 5) if args.quick else (args.size, args.batch, args.rounds)

    models, conv, lora = build_models(size)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, size=(batch, size, size, 3)).astype("float32"))
    errors = {
        "conv adapters, folded": float(np.max(np.abs(models["conv adapters, folded"](x) - conv(x)))),
        "LoRA, merged": float(np.max(np.abs(models["LoRA, merged"](x) - lora(x)))),
    }
    times = time_models(models, x, rounds)
    base = times["base"]
    rows, results = [], {"max_abs_error": errors}
    for name, values in times.items():
        ratio = statistics.median(t / b for t, b in zip(values, base))
        median_ms = 1000 * statistics.median(values)
        params = models[name].count_params()
        rows.append([name, f"{median_ms:.2f}", f"{ratio:.3f}", f"{params:,}",
                     f"{errors[name]:.1e}" if name in errors else ""])
        results[name] = {"median_ms": median_ms, "ratio_to_base": ratio, "params": params}
    print(f"\nInference latency, MobileNetV3Small (minimalistic) classifier, {size} px, batch {batch}, "
          f"{rounds} interleaved rounds, tf.function on CPU ({os.cpu_count()} cores visible)")
    print_table(["model", "median ms", "ratio to base", "params", "max |folded - adapted|"], rows)
    return results


if __name__ == "__main__":
    main()
