"""Shared pieces of the foundation benchmarks."""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import recipes  # noqa: E402


def print_table(header, rows):
    """Prints `header` and `rows` as a markdown table (readable in a terminal, pasteable into BENCHMARKS.md)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))


def digits_transfer_arguments(doc, argv, seeds=5, labels=10):
    """Parses `--quick`, `--seeds` and `--labels` (labelled target examples per class, an int) of a digits benchmark."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, narrow network (the CI run)")
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--labels", type=int, default=labels, help="labelled target examples per class")
    return parser.parse_args(argv)


def run_settings(args, source_epochs, target_epochs):
    """(seeds, source epochs, target epochs, simple_cnn widths): the full run's, or one of each with --quick."""
    if args.quick:
        return 1, 1, 1, (8, 16, 32)
    return args.seeds, source_epochs, target_epochs, (16, 32, 64)


def pretrain_source(x, y, num_classes, epochs, widths=(16, 32, 64), seed=0, learning_rate=2e-3):
    """A simple_cnn classifier trained from scratch on the source task."""
    keras.utils.set_random_seed(seed)
    model = recipes.build_classifier("simple_cnn", num_classes, x.shape[1:], widths=widths)
    recipes.compile_for_fine_tuning(model, learning_rate=learning_rate)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def train_scratch(x, y, num_classes, epochs, widths, seed, learning_rate=2e-3):
    keras.utils.set_random_seed(seed)
    model = recipes.build_classifier("simple_cnn", num_classes, x.shape[1:], widths=widths)
    recipes.compile_for_fine_tuning(model, learning_rate=learning_rate)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model


def transfer(source, x, y, num_classes, method, epochs, seed, ft_learning_rate=1e-3, lpft_learning_rate=1e-3):
    """One of "linear probe", "fine-tune", "LP-FT" from a source model; returns the target model."""
    keras.utils.set_random_seed(seed)
    model = recipes.replace_head(source, num_classes)
    if method == "linear probe":
        recipes.freeze_backbone(model)
        recipes.linear_probe(model, x, y, seed=seed)
        recipes.compile_for_fine_tuning(model)
    elif method == "fine-tune":
        recipes.fine_tune(
            model, x, y, probe=None, epochs=epochs, learning_rate=ft_learning_rate, batch_size=16, verbose=0, seed=seed
        )
    elif method == "LP-FT":
        recipes.fine_tune(
            model,
            x,
            y,
            probe="convex",
            epochs=epochs,
            learning_rate=lpft_learning_rate,
            batch_size=16,
            verbose=0,
            seed=seed,
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    return model


def mean_std(values):
    values = list(values)
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def median_seconds(fn, repeats=3, warmup=0):
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed calls, and the last result."""
    for _ in range(warmup):
        fn()
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def one_thread():
    """TensorFlow on one thread, unless it is already running (a test process imports benchmarks)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
