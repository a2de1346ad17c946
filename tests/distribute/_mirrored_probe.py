"""Run in a subprocess by test_mirrored.py: MirroredStrategy over two logical CPU devices
must be configured before TensorFlow initialises.

For every named case, trains the same model (same seed, same global batches, no
shuffling) once on the default strategy (one device) and once under
`tf.distribute.MirroredStrategy` over two logical CPUs, and prints, as one JSON line
prefixed with "RESULT ", the logged losses of both runs and the largest absolute
difference of every weight (trainable or not: queues, key encoders, moving
statistics) after training. Usage: `_mirrored_probe.py NAME [NAME ...]`.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # as tests/conftest.py

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
sys.path.insert(0, os.getcwd())
import keras  # noqa: E402

keras.config.disable_traceback_filtering()

import keras_transfer as kt  # noqa: E402
from tests import model_zoo  # noqa: E402

EPOCHS = 2


def _bn_encoder():
    """The zoo's conv encoder with a BatchNormalization layer (batch statistics matter)."""
    return keras.Sequential(
        [
            keras.Input((model_zoo.SIZE, model_zoo.SIZE, 1)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(6),
        ]
    )


def _moco_shuffle_bn():
    # Shuffle-BN stand-in with BatchNorm in the key encoder: 2 chunks of the permuted global batch.
    keras.utils.set_random_seed(0)
    model = kt.models.MoCo(_bn_encoder(), projection_dim=4, queue_size=16, bn_splits=2, seed=5, momentum=0.9)
    model.compile(keras.optimizers.SGD(0.5))
    views = model_zoo.images(8)
    return model_zoo.Entry(model, (views, views[::-1] * 0.9), None, 4, None, True)


_EPISODIC = ("MetaModel", "ProtoNet", "BlackBoxLearner")


def _zoo(name):
    def build():
        entry = model_zoo.build(name)
        # Plain SGD: the weights then differ by the gradients. (Adam's update is nearly
        # invariant to the gradient's scale and would hide a loss summed over replicas.)
        if name in _EPISODIC:
            entry.model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        elif name != "DeepCORAL":  # compiled with SGD by the zoo
            entry.model.compile(keras.optimizers.SGD(0.1))
        return entry

    return build


def _fine_tune():
    keras.utils.set_random_seed(0)
    model = kt.recipes.build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0.0)
    x = model_zoo.images(8, size=16)
    y = np.arange(8) % 3
    return model_zoo.Entry(model, x, y, 4, None)


CASES = {
    "MoCo": _zoo("MoCo"),
    "MoCo_shuffle_bn": _moco_shuffle_bn,
    "MetaModel": _zoo("MetaModel"),
    "ProtoNet": _zoo("ProtoNet"),
    "BlackBoxLearner": _zoo("BlackBoxLearner"),
    "DeepCORAL": _zoo("DeepCORAL"),
    "RotationPrediction": _zoo("RotationPrediction"),
    "DenoisingAutoencoder": _zoo("DenoisingAutoencoder"),
    "MaskedImputation": _zoo("MaskedImputation"),
    "fine_tune": _fine_tune,
}


def _train(name, entry):
    """Trains `entry` and returns its logged losses (one per epoch, phase after phase)."""
    if name == "fine_tune":
        # An unshuffled dataset: the same batches in both runs (the recipe's own shuffling
        # reshuffles on every pass over the data, and Keras's distributed `fit` makes one
        # more pass to build).
        data = kt.datasets.make_dataset(entry.x, entry.y, batch_size=entry.batch_size)
        _, histories = kt.recipes.fine_tune(
            entry.model,
            data,
            probe="fit",
            probe_epochs=EPOCHS,
            probe_learning_rate=1e-2,
            epochs=EPOCHS,
            learning_rate=1e-2,
            batch_size=entry.batch_size,
            verbose=0,
            seed=0,
        )
        return histories["probe"].history["loss"] + histories["fine_tune"].history["loss"]
    history = model_zoo.fit(entry, EPOCHS)
    return history.history["loss"]


def _weights(model):
    # By position: layer names get a fresh suffix in each run.
    return {f"{i}:{v.path}": np.asarray(v.numpy(), dtype="float64") for i, v in enumerate(model.weights)}


def _replica_spread(model, strategy, skip=()):
    """Largest difference between the devices' copies of any weight (0: in sync)."""
    spread = 0.0
    skip = {id(v) for v in skip}
    for v in model.weights:
        if id(v) in skip:
            continue
        copies = [np.asarray(c) for c in strategy.experimental_local_results(getattr(v, "_value", v))]
        spread = max([spread] + [float(np.max(np.abs(c - copies[0]), initial=0.0)) for c in copies])
    return spread


def _max_diff(a, b):
    if len(a) != len(b):
        raise AssertionError(f"different weights {list(a)} vs {list(b)}")
    diffs = {k: float(np.max(np.abs(u - v), initial=0.0)) for (k, u), v in zip(a.items(), b.values())}
    return diffs


def _build(name):
    entry = CASES[name]()
    if not entry.model.built or not entry.model.weights:
        entry.model(entry.inputs(1))  # models that learn their input shape from data
    return entry


def run_case(name, strategy):
    started = time.time()
    reference = _build(name)
    initial = _weights(reference.model)
    reference_losses = _train(name, reference)
    reference_weights = _weights(reference.model)
    with strategy.scope():
        entry = _build(name)
    start_diff = max(_max_diff(_weights(entry.model), initial).values(), default=0.0)
    losses = _train(name, entry)
    diffs = _max_diff(_weights(entry.model), reference_weights)
    moved = max(_max_diff(reference_weights, initial).values())
    return {
        "reference_losses": [float(v) for v in reference_losses],
        "losses": [float(v) for v in losses],
        "start_diff": start_diff,
        "max_weight_diff": max(diffs.values()),
        "worst_weight": max(diffs, key=diffs.get),
        "replica_spread": _replica_spread(entry.model, strategy),
        # MoCo: everything but the query encoder (whose BatchNorm statistics are per replica).
        "replica_spread_outside_query_encoder": _replica_spread(
            entry.model, strategy, getattr(entry.model, "encoder", None).weights if name.startswith("MoCo") else ()
        ),
        "max_weight_change": moved,  # how far training moved the weights: the check is not vacuous
        "seconds": time.time() - started,
    }


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for name in sys.argv[1:] or list(CASES):
        try:
            results[name] = run_case(name, strategy)
        except Exception:  # reported, so one failing case does not hide the others
            import traceback

            results[name] = {"error": traceback.format_exc()[-3000:]}
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "results": results}))


if __name__ == "__main__":
    main()
