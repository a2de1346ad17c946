"""Run in a subprocess by test_simclr.py: MirroredStrategy over two logical CPU
devices must be configured before TensorFlow initialises."""

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

keras.config.disable_traceback_filtering()

from keras_transfer.models import SimCLR  # noqa: E402


def build(cross_replica=True, chunk_size=None):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
    )
    model = SimCLR(encoder, projection_dim=3, temperature=0.5, cross_replica=cross_replica, chunk_size=chunk_size)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    return model


def dataset(v1, v2, sizes):
    # Global batches of the given sizes, in order (e.g. 8 then a partial 7).
    starts = np.cumsum([0] + list(sizes))
    batches = [((v1[a:b], v2[a:b]),) for a, b in zip(starts[:-1], starts[1:])]
    ds = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(batch))
    return ds


def run(model, v1, v2, sizes):
    # SGD(lr=1): after one step, weights_before - weights_after is the gradient.
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(dataset(v1, v2, sizes), epochs=1, verbose=0)
    grads = [b - w.numpy() for b, w in zip(before, model.trainable_weights)]
    return history.history["loss"][0], history.history["contrastive_accuracy"][0], grads


def main():
    # Keras's `_maybe_symbolic_build` averages the FIRST distributed batch over replicas,
    # which fails when that batch is uneven; a final partial batch (after full ones) is fine.
    sizes = [int(v) for v in sys.argv[1].split(",")]
    rng = np.random.default_rng(1)
    v1 = rng.normal(size=(sum(sizes), 4, 4, 1)).astype("float32")
    v2 = (v1 + 0.3 * rng.normal(size=v1.shape)).astype("float32")

    single = build()
    h1 = single.projection_head(single.encoder(v1[: sizes[0]])).numpy()
    h2 = single.projection_head(single.encoder(v2[: sizes[0]])).numpy()
    ref_loss, ref_acc, ref_grads = run(single, v1, v2, sizes)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    # Gradient caching (chunks of 3 of each replica's views) under the strategy: same numbers.
    for key, cross_replica, chunk_size in (("True", True, None), ("False", False, None), ("chunked", True, 3)):
        with strategy.scope():
            model = build(cross_replica, chunk_size)
        loss, acc, grads = run(model, v1, v2, sizes)
        results[key] = {
            "loss": loss,
            "accuracy": acc,
            "max_grad_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(grads, ref_grads)),
        }
    # MoCo trains under several replicas (tests/distribute/test_mirrored.py checks that it
    # equals one device); here: one step runs and the mirrored queue stays in sync.
    from keras_transfer.models import MoCo

    with strategy.scope():
        keras.utils.set_random_seed(0)
        encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6)])
        moco = MoCo(encoder, projection_dim=3, queue_size=16)
        moco.compile(optimizer="sgd")
    moco_history = moco.fit(dataset(v1, v2, sizes[:1]), epochs=1, verbose=0).history
    queues = [q.numpy() for q in strategy.experimental_local_results(moco.queue.value)]
    moco_result = {
        "loss": float(moco_history["loss"][0]),
        "pointer": int(moco.queue_pointer.numpy()),
        "queue_spread": float(np.max(np.abs(queues[1] - queues[0]))),
    }
    print(
        "RESULT "
        + json.dumps(
            {
                "moco": moco_result,
                "reference_loss": ref_loss,
                "reference_accuracy": ref_acc,
                "max_grad": max(float(np.max(np.abs(g))) for g in ref_grads),
                "z1": h1.tolist(),
                "z2": h2.tolist(),
                "distributed": results,
                "replicas": strategy.num_replicas_in_sync,
            }
        )
    )


if __name__ == "__main__":
    main()
