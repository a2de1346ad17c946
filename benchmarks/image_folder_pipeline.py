"""The fine-tuning job on a folder of JPEGs against the plain Keras way, and its input pipeline.

A generated folder of JPEGs (5 classes, smooth random colour fields with noise, 256 px, about
20 KB each, resized to `--image-size` by both pipelines) is read two ways:

- **keras_transfer**: `datasets.load_image_folder` (one decode pass over every file first, so a
  corrupt file is named before training; then `keras.utils.image_dataset_from_directory`) and
  `recipes.finetune_job.finetune_folder` (what `keras-transfer finetune` runs: convex linear probe on
  features extracted once, then `--epochs` of fine-tuning of every block, validation metrics);
- **plain Keras**: `keras.utils.image_dataset_from_directory` and the Keras guide's recipe on the
  same `keras.applications` backbone (`weights=None`): the head trained one epoch on the frozen
  backbone, then `--epochs` epochs of fine-tuning of everything but BatchNorm (kept in inference
  mode, as the guide intends and the job does) at a 10x lower learning rate, validation metrics.
  Same batch size, same split, same number of fine-tuning epochs.

Reported, each in interleaved rounds (median and range over rounds):

1. images per second of each input pipeline alone (one pass over the training split, decode and
   resize included, nothing downstream), and the job's up-front check pass (seconds);
2. images per second the training step consumes (`fit` on one cached batch, repeated), and the
   pipeline-to-step ratio (over 2 means the input pipeline is never the bottleneck);
3. end-to-end seconds of the job vs the plain Keras way (ratio over 1: the job is faster), and
   apart from it the fine-tuning epochs alone (the same work on both sides: every block trains,
   same batches, same number of epochs; timed by a callback from the first to the last batch);
4. the training step's images per second under each `--variants` setting (float32, mixed
   precision, XLA: what `keras-transfer finetune --mixed-precision/--jit-compile` select);
5. peak resident memory of the job in a fresh process for two folder sizes (flat when the
   loader streams).

    python -m benchmarks.image_folder_pipeline [--quick] [--images 2000] [--backbone mobilenet_v2]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._common import print_table  # noqa: E402
from keras_transfer import datasets  # noqa: E402
from keras_transfer import recipes  # noqa: E402
from keras_transfer.recipes.finetune_job import finetune_folder  # noqa: E402

CLASSES = 5
BATCH = 32
VALIDATION = 0.2

# Peak RSS of one job in a fresh process: argv = folder, backbone, image size, epochs.
MEMORY_CHILD = r"""
import os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.getcwd())
from keras_transfer.recipes.finetune_job import finetune_folder
root, backbone, size, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
finetune_folder(root, backbone=backbone, image_size=size, epochs=epochs, batch_size=32, verbose=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def make_folder(root, images, side=256, seed=0):
    """`images` JPEGs in `root/class_<k>/`: smooth random colour fields plus pixel noise."""
    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        os.makedirs(os.path.join(root, f"class_{k}"), exist_ok=True)
    for i in range(images):
        coarse = rng.uniform(0, 255, size=(1, 8, 8, 3)).astype("float32")
        field = tf.image.resize(coarse, (side, side), method="bicubic")[0].numpy()
        pixels = np.clip(field + rng.normal(0, 12, size=field.shape), 0, 255).astype("uint8")
        path = os.path.join(root, f"class_{i % CLASSES}", f"{i:05d}.jpg")
        tf.io.write_file(path, tf.io.encode_jpeg(pixels, quality=90))
    return root


def _quiet(function, *args, **kwargs):
    """Runs `function` with stdout silenced (the loaders print "Found N files")."""
    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            return function(*args, **kwargs)
        finally:
            sys.stdout = saved


def plain_datasets(root, size, seed=0):
    def read(subset):
        return keras.utils.image_dataset_from_directory(
            root,
            validation_split=VALIDATION,
            subset=subset,
            seed=seed,
            image_size=(size, size),
            batch_size=BATCH,
            verbose=False,
        )

    return _quiet(read, "training"), _quiet(read, "validation")


def pass_rate(dataset):
    """Images per second of one pass over `dataset` (nothing downstream)."""
    start, count = time.perf_counter(), 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def pipeline_round(root, size, ours_first):
    """Both input pipelines over the training split, in the order given; and the job's check pass."""
    rates = {}
    for side in ("ours", "plain") if ours_first else ("plain", "ours"):
        if side == "ours":
            start = time.perf_counter()
            folder = _quiet(
                datasets.load_image_folder, root, image_size=size, batch_size=BATCH, validation_split=VALIDATION
            )
            rates["check"] = time.perf_counter() - start
            rates["ours"] = pass_rate(folder.train)
        else:
            rates["plain"] = pass_rate(plain_datasets(root, size)[0])
    return rates


class FitTimer(keras.callbacks.Callback):
    """Seconds of the last `fit`, from its first batch's start to its end (tracing included)."""

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


VARIANTS = {  # name: (dtype policy, jit_compile)
    "float32": (None, False),
    "mixed_bfloat16": ("mixed_bfloat16", False),
    "mixed_float16": ("mixed_float16", False),
    "xla": (None, True),
    "mixed_bfloat16+xla": ("mixed_bfloat16", True),
}


def step_rate(backbone, size, steps, variant="float32"):
    """Images per second one training step consumes: `fit` on one cached batch, repeated."""
    policy, jit_compile = VARIANTS[variant]
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy or "float32")
    try:
        model = recipes.build_classifier(backbone, CLASSES, (size, size, 3), weights=None)
    finally:
        keras.config.set_dtype_policy(previous)
    recipes.compile_for_fine_tuning(model, learning_rate=1e-4, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    batch = (rng.uniform(0, 255, (BATCH, size, size, 3)).astype("float32"), np.arange(BATCH) % CLASSES)
    data = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * BATCH / (time.perf_counter() - start)


def plain_keras_way(root, backbone, size, epochs):
    """The Keras guide's transfer recipe on the same backbone; returns (seconds, fine-tuning seconds)."""
    start, timer = time.perf_counter(), FitTimer()
    keras.utils.set_random_seed(0)
    train, val = plain_datasets(root, size)
    spec = recipes.get_spec(backbone)
    if spec.preprocess not in ("tf", "none"):
        raise ValueError(f"`--backbone` must take [-1, 1] or raw pixels. Received: backbone={backbone!r}")
    application = getattr(keras.applications, spec.constructor)
    base = application(include_top=False, weights=None, input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    # As the Keras guide does: the family's preprocessing ([-1, 1] for MobileNetV2; built in for the others).
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs) if spec.preprocess == "tf" else inputs
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    base.trainable = False
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(train, epochs=1, validation_data=val, verbose=0)
    base.trainable = True
    # The guide keeps BatchNorm in inference mode while fine-tuning; in Keras 3 fit's training=True overrides
    # the graph's training=False, so (as the job does) its layers are frozen instead: the same work on both sides.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    model.fit(train, epochs=epochs, validation_data=val, verbose=0, callbacks=[timer])
    model.evaluate(val, verbose=0)
    return time.perf_counter() - start, timer.seconds, model.count_params() - _frozen(model)


def _frozen(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def job(root, backbone, size, epochs):
    """`keras-transfer finetune`'s recipe (`finetune_folder`); returns (seconds, fine-tuning seconds)."""
    start, timer = time.perf_counter(), FitTimer()
    model, _ = _quiet(
        finetune_folder,
        root,
        backbone=backbone,
        image_size=size,
        epochs=epochs,
        batch_size=BATCH,
        verbose=0,
        callbacks=[timer],
    )
    return time.perf_counter() - start, timer.seconds, model.count_params() - _frozen(model)


def peak_memory(root, backbone, size, epochs):
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, root, backbone, str(size), str(epochs)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def summary(values, digits=1):
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI: 40 small images, one round, no memory runs")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs on both sides")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-images", type=int, nargs="*", default=(500, 2000), help="none: skip")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["float32", "mixed_bfloat16", "xla"])
    args = parser.parse_args(argv)
    if args.quick:
        # The smallest keras.applications family to build (MobileNet v1); the memory child is skipped.
        args.images, args.image_size, args.rounds, args.memory_images = 40, 32, 1, ()
        args.backbone, args.epochs, args.variants = "mobilenet", 1, ["mixed_bfloat16"]
    work = tempfile.mkdtemp(prefix="image_folder_bench_")
    try:
        root = make_folder(os.path.join(work, "folder"), args.images, side=max(64, args.image_size + 32))
        pipe, seconds, tuned, trained = [], {"job": [], "plain": []}, {"job": [], "plain": []}, {}
        steps = {variant: [] for variant in args.variants}
        for r in range(args.rounds):
            pipe.append(pipeline_round(root, args.image_size, ours_first=r % 2 == 0))
            for variant in args.variants[r % len(args.variants) :] + args.variants[: r % len(args.variants)]:
                steps[variant].append(step_rate(args.backbone, args.image_size, 1 if args.quick else 20, variant))
            order = ["job", "plain"] if r % 2 == 0 else ["plain", "job"]
            for side in order:
                run = job if side == "job" else plain_keras_way
                total, fine_tuning, trained[side] = run(root, args.backbone, args.image_size, args.epochs)
                seconds[side].append(total)
                tuned[side].append(fine_tuning)
        ratio = [p / j for p, j in zip(seconds["plain"], seconds["job"])]
        tuned_ratio = [p / j for p, j in zip(tuned["plain"], tuned["job"])]
        base = steps[args.variants[0]]
        print(f"{args.images} JPEGs, {args.image_size} px, {args.backbone} (weights=None), batch {BATCH}, ", end="")
        print(f"{args.epochs} fine-tuning epoch(s), {args.rounds} interleaved rounds: median (range)")
        print_table(
            ["measure", "keras_transfer", "plain Keras", "ratio"],
            [
                [
                    "input pipeline, images/s",
                    summary([p["ours"] for p in pipe]),
                    summary([p["plain"] for p in pipe]),
                    summary([p["ours"] / p["plain"] for p in pipe], 2),
                ],
                ["up-front decode check, s", summary([p["check"] for p in pipe]), "—", ""],
                [
                    f"training step consumes ({args.variants[0]}), images/s",
                    summary(base),
                    "(same model)",
                    "pipeline / step: " + summary([p["ours"] / s for p, s in zip(pipe, base)], 2),
                ],
                ["weights fine-tuned", f"{trained['job']:,}", f"{trained['plain']:,}", ""],
                [
                    f"fine-tuning, {args.epochs} epoch(s), s",
                    summary(tuned["job"]),
                    summary(tuned["plain"]),
                    "plain / job: " + summary(tuned_ratio, 2),
                ],
                [
                    "end to end (probe + fine-tune), s",
                    summary(seconds["job"]),
                    summary(seconds["plain"]),
                    "plain / job: " + summary(ratio, 2),
                ],
            ],
        )
        print_table(
            ["training step", "images/s", f"vs {args.variants[0]}"],
            [
                [variant, summary(rates), summary([r / b for r, b in zip(rates, base)], 2)]
                for variant, rates in steps.items()
            ],
        )
        rows = []
        for n in args.memory_images:
            folder = make_folder(os.path.join(work, f"memory_{n}"), n, side=max(64, args.image_size + 32), seed=1)
            rows.append([n, f"{peak_memory(folder, args.backbone, args.image_size, args.epochs):,.0f}"])
        if rows:
            print_table(["images in the folder", "job's peak RSS, MiB"], rows)
        return {
            "pipeline": pipe,
            "steps": steps,
            "seconds": seconds,
            "fine_tuning": tuned,
            "trained": trained,
            "memory": rows,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
