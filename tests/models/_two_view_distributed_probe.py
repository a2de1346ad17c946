"""Run in a subprocess by test_barlow_twins_and_vicreg.py: one SGD step of BarlowTwins and of VICReg
on one device and under MirroredStrategy over two logical CPUs (global batch 8 = 4 + 4), from
the same weights; prints the largest weight difference as JSON."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
sys.path.insert(0, os.getcwd())
import keras  # noqa: E402

from keras_transfer.models import BarlowTwins  # noqa: E402
from keras_transfer.models import VICReg  # noqa: E402


def build(cls, **kwargs):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
    )
    model = cls(encoder, projection_dim=3, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def main():
    rng = np.random.default_rng(0)
    v1 = rng.normal(size=(8, 4, 4, 1)).astype("float32")
    v2 = (v1 + 0.3 * rng.normal(size=v1.shape)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8)
    result = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name, cls, kwargs in (("barlow_twins", BarlowTwins, {"redundancy_weight": 0.2}), ("vicreg", VICReg, {})):
        single = build(cls, **kwargs)
        initial = [w.numpy() for w in single.weights]
        single_loss = single.fit(data, epochs=1, verbose=0).history["loss"][-1]
        with strategy.scope():
            mirrored = build(cls, **kwargs)
            mirrored.set_weights(initial)
        mirrored_loss = mirrored.fit(data, epochs=1, verbose=0).history["loss"][-1]
        result[name] = {
            "replicas": strategy.num_replicas_in_sync,
            "max_weight_difference": max(
                float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.weights, mirrored.weights)
            ),
            "max_weight_movement": max(float(np.max(np.abs(a.numpy() - b))) for a, b in zip(single.weights, initial)),
            "single_loss": float(single_loss),
            "mirrored_loss": float(mirrored_loss),
        }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
