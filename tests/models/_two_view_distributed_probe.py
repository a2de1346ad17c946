"""Run in a subprocess by test_simsiam_and_byol.py: one SGD step of BarlowTwins, VICReg, SimSiam, BYOL
and DINO on one device and under MirroredStrategy over two logical CPUs (global batch 8 = 4 + 4), from
the same weights; prints the largest weight difference as JSON. SimSiam and BYOL keep their default
heads (BatchNorm, synchronized when built in the strategy's scope); BYOL's target network, updated by
EMA after the step, and DINO's centre are reported on their own."""

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

from keras_transfer.models import BYOL  # noqa: E402
from keras_transfer.models import DINO  # noqa: E402
from keras_transfer.models import BarlowTwins  # noqa: E402
from keras_transfer.models import SimSiam  # noqa: E402
from keras_transfer.models import VICReg  # noqa: E402

CASES = (
    ("barlow_twins", BarlowTwins, {"redundancy_weight": 0.2}),
    ("vicreg", VICReg, {}),
    # A predictor wider than the bottleneck's 1 unit: with one ReLU unit, half the predictions are
    # exactly 0 and their normalisation's gradient is huge (both runs agree, but a step moves far).
    ("simsiam", SimSiam, {"prediction_hidden_dim": 6}),
    # A low momentum, so that the EMA moves the target visibly in one step.
    ("byol", BYOL, {"momentum": 0.5}),
    ("dino", DINO, {"center_momentum": 0.5}),
)


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


def max_difference(a, b):
    values = [[w.numpy() if hasattr(w, "numpy") else w for w in ws] for ws in (a, b)]
    return max(float(np.max(np.abs(u - v))) for u, v in zip(*values))


def target_weights(model):
    if not isinstance(model, BYOL):
        return []
    return [w.numpy() for w in model.target_encoder.weights + model.target_projection_head.weights]


def main():
    rng = np.random.default_rng(0)
    v1 = rng.normal(size=(8, 4, 4, 1)).astype("float32")
    v2 = (v1 + 0.3 * rng.normal(size=v1.shape)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8)
    result = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for name, cls, kwargs in CASES:
        single = build(cls, **kwargs)
        initial = [w.numpy() for w in single.weights]
        initial_target = target_weights(single)
        single_loss = single.fit(data, epochs=1, verbose=0).history["loss"][-1]
        with strategy.scope():
            mirrored = build(cls, **kwargs)
            mirrored.set_weights(initial)
        mirrored_loss = mirrored.fit(data, epochs=1, verbose=0).history["loss"][-1]
        result[name] = {
            "replicas": strategy.num_replicas_in_sync,
            "max_weight_difference": max_difference(single.weights, mirrored.weights),
            "max_weight_movement": max_difference(single.weights, initial),
            "single_loss": float(single_loss),
            "mirrored_loss": float(mirrored_loss),
        }
        if initial_target:
            result[name]["max_target_difference"] = max_difference(target_weights(single), target_weights(mirrored))
            result[name]["max_target_movement"] = max_difference(target_weights(single), initial_target)
        if cls is DINO:
            result[name]["max_center_difference"] = float(np.max(np.abs(single.center.numpy() - mirrored.center)))
            result[name]["max_center_movement"] = float(np.max(np.abs(single.center.numpy())))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
