"""Run in a subprocess by test_barlow_twins_and_vicreg.py: one SGD step of BarlowTwins, VICReg and DINO
on one device and under MirroredStrategy over two logical CPUs (global batch 8 = 4 + 4), from
the same weights; prints the largest weight difference (and DINO's centre difference) as JSON."""

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

from keras_transfer.models import DINO  # noqa: E402
from keras_transfer.models import BarlowTwins  # noqa: E402
from keras_transfer.models import VICReg  # noqa: E402


def build(cls, **kwargs):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
    )
    if cls is DINO:
        model = cls(encoder, out_dim=5, hidden_dim=4, bottleneck_dim=3, **kwargs)
        # Unit-scale head weights (the 0.02-std init leaves a tiny bottleneck whose normalisation is steep).
        rng = np.random.default_rng(1)
        for student, teacher in zip(model.head.weights, model.teacher_head.weights):
            teacher.assign(student.assign(rng.normal(size=student.shape)))
    else:
        model = cls(encoder, projection_dim=3, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.5 if cls is not DINO else 0.1))
    return model


def main():
    rng = np.random.default_rng(0)
    v1 = rng.normal(size=(8, 4, 4, 1)).astype("float32")
    v2 = (v1 + 0.3 * rng.normal(size=v1.shape)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8)
    result = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    models = (
        ("barlow_twins", BarlowTwins, {"redundancy_weight": 0.2}),
        ("vicreg", VICReg, {}),
        ("dino", DINO, {"center_momentum": 0.5}),
    )
    for name, cls, kwargs in models:
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
        if cls is DINO:
            result[name]["max_center_difference"] = float(np.max(np.abs(single.center.numpy() - mirrored.center)))
            result[name]["max_center_movement"] = float(np.max(np.abs(single.center.numpy())))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
