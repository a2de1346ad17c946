"""Run by test_clip.py in a subprocess: two logical CPU devices must be configured
before TensorFlow initialises, which a shared pytest process cannot do.

Trains the same CLIP (same initial weights, SGD) for two steps on one device and
under MirroredStrategy over two logical CPUs (global batches 8 then 6, i.e.
4+4 and 3+3 pairs per replica) and prints the weights, logs and the clamped
logit scale as JSON. `argv[1]`: JSON `CLIP` arguments of both models (e.g.
`{"loss_type": "siglip"}`); `argv[2]`: JSON arguments of the mirrored one only (e.g.
`{"chunk_size": 3}`: a chunked mirrored step against the plain single-device one).
"""

import json
import math
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

from keras_transfer.layers import TextTransformerEncoder  # noqa: E402
from keras_transfer.models import CLIP  # noqa: E402


def build(**kwargs):
    keras.utils.set_random_seed(7)
    image_encoder = keras.Sequential(
        [keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D()]
    )
    text_encoder = TextTransformerEncoder(12, 5, embedding_dim=8, num_layers=1, num_heads=2)
    model = CLIP(image_encoder, text_encoder, projection_dim=6, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def main():
    rng = np.random.default_rng(0)
    # Each image's pixels from its own distribution (uniform noise raised to a random power): plain uniform
    # noise pools to nearly one embedding direction, whose text-to-image logits tie to float rounding and
    # flip that accuracy between runs that differ only in reduction order.
    images = (rng.uniform(size=(13, 6, 6, 1)) ** rng.uniform(0.2, 5.0, size=(13, 1, 1, 1))).astype("float32")
    tokens = rng.integers(1, 12, size=(13, 5)).astype("int32")
    tokens[:, 3:] = np.where(rng.uniform(size=(13, 2)) < 0.5, 0, tokens[:, 3:])
    data = {"images": images, "token_ids": tokens}

    common = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    mirrored_only = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    single = build(**common)
    single(data)  # build
    initial = [w.numpy() for w in single.weights]
    history_single = single.fit(data, batch_size=8, epochs=1, shuffle=False, verbose=0).history

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build(**common, **mirrored_only)
        mirrored(data)
        mirrored.set_weights(initial)
    history_mirrored = mirrored.fit(data, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    differences = [float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.weights, mirrored.weights)]
    moved = [float(np.max(np.abs(a.numpy() - b))) for a, b in zip(single.weights, initial)]

    # Clamp after a step (learning rate 0: only the constraint moves the scale).
    mirrored.optimizer.learning_rate.assign(0.0)
    mirrored.log_logit_scale.assign(math.log(150.0))
    mirrored.fit(data, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0)
    result = {
        "max_weight_difference": max(differences),
        "median_weight_movement": float(np.median(moved)),
        "num_weights": len(differences),
        "single": {k: float(v[-1]) for k, v in history_single.items()},
        "mirrored": {k: float(v[-1]) for k, v in history_mirrored.items()},
        "replicas": strategy.num_replicas_in_sync,
        "clamped_scale": mirrored.get_logit_scale(),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
