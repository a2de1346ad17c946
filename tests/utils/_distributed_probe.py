"""Run in a subprocess by test_distributed.py: two logical CPU devices must be
configured before TensorFlow initialises, which a shared pytest process cannot do."""

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
from keras_transfer.utils import distributed  # noqa: E402


def loss_terms(z_local, z_all, labels):
    # Every local row meets the NEXT row of the global batch (wrapping): a
    # loss that mixes rows of different replicas, like contrastive negatives.
    n = tf.shape(z_all)[0]
    partner = tf.gather(z_all, (labels + 1) % n)
    return tf.reduce_sum(z_local * partner, axis=1) + 0.1 * tf.reduce_sum(z_all**2)


def main():
    # One process, several splits: TensorFlow starts once.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for split in [int(v) for v in sys.argv[1:]] or [3]:
        probe(strategy, split)


def probe(strategy, split):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype("float32")
    w0 = rng.normal(size=(3, 2)).astype("float32")

    # Single device reference.
    w = tf.Variable(w0)
    with tf.GradientTape() as tape:
        z = x @ w
        labels = distributed.global_batch_labels(z)
        reference_loss = tf.reduce_mean(loss_terms(z, distributed.all_gather_with_grad(z), labels))
    reference_grad = tape.gradient(reference_loss, w)

    with strategy.scope():
        wd = tf.Variable(w0)

    def value_fn(context):
        return x[:split] if context.replica_id_in_sync_group == 0 else x[split:]

    xs = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def step(x_local):
        with tf.GradientTape() as tape:
            z = x_local @ wd
            z_all = distributed.all_gather_with_grad(z)
            labels = distributed.global_batch_labels(z)
            loss = distributed.global_mean(tf.reduce_sum(loss_terms(z, z_all, labels)), tf.shape(z)[0])
        grad = tape.gradient(loss, wd)
        return (
            loss,
            grad,
            labels,
            distributed.replica_offset(z),
            distributed.num_replicas(),
            distributed.global_batch_size(z),
            z_all,
        )

    loss, grad, labels, offset, replicas, gsize, z_all = strategy.run(step, args=(xs,))
    local = strategy.experimental_local_results
    result = {
        "reference_loss": float(reference_loss),
        "reference_grad": reference_grad.numpy().tolist(),
        "loss_sum": float(strategy.reduce("SUM", loss, axis=None)),
        "grad_sum": strategy.reduce("SUM", grad, axis=None).numpy().tolist(),
        "labels": [v.numpy().tolist() for v in local(labels)],
        "offsets": [int(v) for v in local(offset)],
        "num_replicas": [int(v) for v in local(replicas)],
        "global_size": [int(v) for v in local(gsize)],
        "gathered_equal_reference": bool(all(np.allclose(v.numpy(), x @ w0, atol=1e-6) for v in local(z_all))),
        "default_offset": int(distributed.replica_offset(tf.zeros((4, 2)))),
        "default_replicas": distributed.num_replicas(),
    }
    print(f"RESULT {split} " + json.dumps(result))


if __name__ == "__main__":
    main()
