"""SimCLR step cost and augmentation throughput on this machine.

1. Crop: batched `tf.image.crop_and_resize` (ours, default) vs per-image
   `tf.image.sample_distorted_bounding_box` (ours, "bounding_box") vs keras-cv
   `RandomCropAndResize` (optional peer: skipped with a reason if keras-cv is missing),
   as tf.data throughput of the crop stage alone (images/s, median of windows).
2. Step: SimCLR step (B pairs = 2B images) vs two supervised steps of the same encoder on
   the same 2B images in ONE compiled call (a custom `train_step`, as SimCLR's), so both pay
   one call's overhead; ratio per interleaved round, median and range (1.0 means the
   projection head and loss cost nothing); and vs one supervised step on the same 2B images
   (one forward/backward pass and one update, as SimCLR: the head and loss alone).
3. Pipeline: `simclr_dataset` pairs/s (full augmentation, two views) vs the pairs/s a
   SimCLR step consumes (ratio > 1: the input pipeline keeps up).

    python benchmarks/ssl_step_cost.py [--quick]
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer.augment import SimCLRAugmentation  # noqa: E402
from keras_transfer.augment import image_ops  # noqa: E402
from keras_transfer.augment import simclr_dataset  # noqa: E402
from keras_transfer.datasets import load_digits_m  # noqa: E402
from keras_transfer.models import SimCLR  # noqa: E402
from keras_transfer.recipes import load_backbone  # noqa: E402


def encoder_model(image_size, widths):
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = load_backbone("simple_cnn", input_shape=(image_size, image_size, 3), widths=widths)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="encoder")


def throughput(dataset, batches, windows):
    """Median examples/s of `dataset` (elements are batches) over `windows` windows."""
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing, autotune
    rates = []
    for _ in range(windows):
        start, count = time.perf_counter(), 0
        for _ in range(batches):
            element = next(iterator)
            count += int(tf.nest.flatten(element)[0].shape[0])
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def crop_benchmark(x, image_size, batch_size, batches, windows, peers=True):
    base = tf.data.Dataset.from_tensor_slices(x).repeat().batch(batch_size, drop_remainder=True)
    size = (image_size, image_size)
    to01 = lambda b: tf.cast(b, "float32") / 255.0  # noqa: E731
    candidates = {
        "crop_and_resize (ours, batched)": lambda b: image_ops.random_resized_crop(to01(b), size),
        "sample_distorted_bounding_box (per image)": lambda b: tf.map_fn(
            lambda im: image_ops.random_resized_crop_bounding_box(im, size),
            to01(b),
            fn_output_signature=tf.TensorSpec(size + (x.shape[-1],), "float32"),
        ),
    }
    try:
        if not peers:
            raise ImportError("--quick leaves the optional peer out (its import alone takes seconds)")
        import keras_cv

        layer = keras_cv.layers.RandomCropAndResize(
            target_size=size, crop_area_factor=(0.08, 1.0), aspect_ratio_factor=(3 / 4, 4 / 3)
        )
        candidates["keras-cv RandomCropAndResize"] = lambda b: layer(to01(b), training=True)
    except Exception as error:  # optional peer
        print(f"keras-cv peer skipped: {type(error).__name__}: {error}")
    results = {}
    for name, fn in candidates.items():
        ds = base.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        results[name] = throughput(ds, batches, windows)
    return results


class TwoSupervisedSteps(keras.Model):
    """Two supervised optimizer steps per `train_on_batch` call: the like-for-like denominator of one SimCLR step
    (both pay one call and one compiled function for the same 2B images)."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def call(self, x, training=False):
        return self.model(x, training=training)

    def train_step(self, data):
        (x1, x2), (y1, y2) = data[0], data[1]
        variables = self.model.trainable_variables
        for x, y in ((x1, y1), (x2, y2)):
            with tf.GradientTape() as tape:
                logits = self.model(x, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            self.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss}


def step_times(x, y, image_size, widths, batch_size, steps, rounds=3):
    """Median seconds of a SimCLR step (batch_size pairs), of two supervised steps on the same 2 x batch_size
    images in one call, and of one supervised step (`train_on_batch`, batch_size), in interleaved rounds."""
    keras.utils.set_random_seed(0)

    def supervised_model():
        inputs = keras.Input((image_size, image_size, 3))
        return keras.Model(inputs, keras.layers.Dense(10)(encoder_model(image_size, widths)(inputs)))

    supervised = supervised_model()
    supervised.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    two_steps = TwoSupervisedSteps(supervised_model())
    two_steps.compile(optimizer="adam")
    simclr = SimCLR(encoder_model(image_size, widths), projection_dim=64, temperature=0.2)
    simclr.compile(optimizer="adam")
    xb = x[:batch_size].astype("float32")
    yb = y[:batch_size]
    v1, v2 = xb, xb[::-1].copy()

    def timed(fn):
        fn()
        fn()  # tracing + first run
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    # Interleave the models' timing rounds so machine load affects all alike.
    x2b, y2b = np.concatenate([v1, v2]), np.concatenate([yb, yb[::-1]])
    sup, two, big, ssl, ratios, big_ratios = [], [], [], [], [], []
    for _ in range(rounds):
        sup.append(timed(lambda: supervised.train_on_batch(xb, yb)))
        two.append(timed(lambda: two_steps.train_on_batch((v1, v2), (yb, yb[::-1].copy()))))
        big.append(timed(lambda: supervised.train_on_batch(x2b, y2b)))
        ssl.append(timed(lambda: simclr.train_on_batch((v1, v2))))
        ratios.append(ssl[-1] / two[-1])
        big_ratios.append(ssl[-1] / big[-1])
    medians = [statistics.median(t) for t in (ssl, two, big, sup)]
    return (*medians, ratios, big_ratios)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    image_size = 32
    batch_size = 16 if args.quick else 64
    widths = (8, 16) if args.quick else (16, 32, 64)
    (x, y), _ = load_digits_m(image_size=image_size, seed=0)
    if args.quick:
        x, y = x[:128], y[:128]
    windows, batches, steps = (2, 2, 2) if args.quick else (5, 20, 10)

    crops = crop_benchmark(x, image_size, batch_size, batches, windows, peers=not args.quick)
    fastest = max(crops, key=crops.get)
    print(f"\nCrop stage alone, {image_size}px, batch {batch_size} (images/s, median of {windows} windows):")
    print_table(
        ["crop", "images/s", "vs crop_and_resize"],
        [[k, f"{v:.0f}", f"{v / crops['crop_and_resize (ours, batched)']:.2f}x"] for k, v in crops.items()],
    )

    simclr_step, two_steps, big_step, supervised_step, ratios, big_ratios = step_times(
        x, y, image_size, widths, batch_size, steps, rounds=1 if args.quick else 5
    )
    step_ratio = statistics.median(ratios)
    print(f"\nTrain step, simple_cnn{widths} encoder, {image_size}px RGB, batch {batch_size}:")
    print_table(
        ["step", "ms (median)"],
        [
            [f"supervised, one step per call (batch {batch_size})", f"{1e3 * supervised_step:.1f}"],
            [f"2 supervised steps in one call ({2 * batch_size} images)", f"{1e3 * two_steps:.1f}"],
            [f"SimCLR ({batch_size} pairs = {2 * batch_size} images)", f"{1e3 * simclr_step:.1f}"],
            [f"supervised, one step on the {2 * batch_size} images", f"{1e3 * big_step:.1f}"],
            [
                f"ratio SimCLR / (2 steps in one call), median of {len(ratios)} rounds [min, max]",
                f"{step_ratio:.3f} [{min(ratios):.3f}, {max(ratios):.3f}]",
            ],
            [
                f"ratio SimCLR / (one step on {2 * batch_size} images), median [min, max]",
                f"{statistics.median(big_ratios):.3f} [{min(big_ratios):.3f}, {max(big_ratios):.3f}]",
            ],
        ],
    )

    pipeline = throughput(
        simclr_dataset(x, batch_size=batch_size, augmentation=SimCLRAugmentation(image_size), repeat=True),
        batches,
        windows,
    )
    consumed = batch_size / simclr_step
    print("\nAugmentation pipeline (two views, full SimCLR recipe) vs step consumption:")
    print_table(
        ["", "pairs/s"],
        [
            ["simclr_dataset alone", f"{pipeline:.0f}"],
            ["SimCLR step consumes", f"{consumed:.0f}"],
            ["ratio", f"{pipeline / consumed:.2f}"],
        ],
    )
    return {
        "crops": crops,
        "fastest_crop": fastest,
        "simclr_step": simclr_step,
        "supervised_step": supervised_step,
        "two_supervised_steps": two_steps,
        "one_step_on_2b": big_step,
        "step_ratio_one_step_on_2b": statistics.median(big_ratios),
        "step_ratio": step_ratio,
        "pipeline_pairs_per_s": pipeline,
        "consumed_pairs_per_s": consumed,
        "pipeline_ratio": pipeline / consumed,
    }


if __name__ == "__main__":
    main()
