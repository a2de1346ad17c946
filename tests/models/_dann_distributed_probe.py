"""Run in a subprocess by test_dann.py: MirroredStrategy over two logical CPU devices
must be configured before TensorFlow initialises."""

import json
import os
import sys

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

from keras_transfer.datasets import domain_pairs  # noqa: E402
from keras_transfer.models import DANN  # noqa: E402
from keras_transfer.models import SourceOnly  # noqa: E402


def build(kind):
    keras.utils.set_random_seed(0)
    fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
    lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    if kind == "dann":
        dc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)])
        model = DANN(fe, lc, dc, factor=0.7, domain_loss_weight=1.5)
    else:
        model = SourceOnly(fe, lc)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    return model


def run(model, data):
    # SGD(lr=1) and one step: weights_before - weights_after is the gradient.
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(data, epochs=1, verbose=0)
    grads = [b - w.numpy() for b, w in zip(before, model.trainable_weights)]
    return {k: float(v[0]) for k, v in history.history.items()}, grads


def main():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(8, 4)).astype("float32")
    ys = rng.integers(0, 3, size=8).astype("int64")
    xt = (rng.normal(size=(8, 4)) + 1.5).astype("float32")
    # One global batch of 8 source + 8 target examples (4 + 4 on each replica).
    data = domain_pairs(xs, ys, xt, batch_size=8, shuffle=False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for kind in ("dann", "source_only"):
        reference_logs, reference_grads = run(build(kind), data)
        with strategy.scope():
            model = build(kind)
        logs, grads = run(model, data)
        results[kind] = {
            "reference_logs": reference_logs,
            "logs": logs,
            "max_grad": max(float(np.max(np.abs(g))) for g in reference_grads),
            "max_grad_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(grads, reference_grads)),
        }
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "results": results}))


if __name__ == "__main__":
    main()
