"""Run in subprocesses by test_multi_worker.py.

    python _multi_worker_probe.py reference OUT.npz          # one process: default and Mirrored
    TF_CONFIG=... python _multi_worker_probe.py train OUT.npz CKPT_DIR   # one of two workers
    TF_CONFIG=... python _multi_worker_probe.py resume OUT.npz CKPT_DIR  # the same workers, restarted

Each mode trains the same four models on the same global batches: a `build_classifier`
model (Adam, compiled loss and accuracy), `SimCLR` (custom `train_step`, negatives gathered
across replicas), `MoCo` (global-batch keys, queue and key encoder written in cross-replica
context) and `DANN` (custom `train_step`, `GradientReversalSchedule` callback). The
"train" workers also try Keras's own `fit` (which fails under MultiWorkerMirroredStrategy),
then start a checkpointed classifier run that exits the process at the start of its last
epoch; "resume" restarts that run from the checkpoint.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # as tests/conftest.py

sys.path.insert(0, os.getcwd())
import keras  # noqa: E402

from keras_transfer import distribute  # noqa: E402
from keras_transfer.callbacks import GradientReversalSchedule  # noqa: E402
from keras_transfer.datasets import domain_pairs  # noqa: E402
from keras_transfer.models import DANN  # noqa: E402
from keras_transfer.models import MoCo  # noqa: E402
from keras_transfer.models import SimCLR  # noqa: E402
from keras_transfer.recipes import build_classifier  # noqa: E402

EPOCHS = 3
INTERRUPT_AT_EPOCH = 2  # the checkpointed run exits when this (0-based) epoch begins
INTERRUPT_EXIT_CODE = 17


def classifier():
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Rescaling(1.0 / 255.0),  # build_classifier hands it [0, 255] pixels
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
        ]
    )
    # Frozen, as the fine-tuning recipes leave it: a training BatchNorm would normalise with
    # per-replica batch statistics, which differ from one device's on the global batch.
    backbone.layers[-1].trainable = False
    model = build_classifier(backbone, num_classes=3, input_shape=(8, 8, 1), dropout=0.0, activation=None)
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def simclr(cross_replica=True):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
    )
    model = SimCLR(encoder, projection_dim=3, temperature=0.5, cross_replica=cross_replica)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5))
    return model


def moco():
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6, activation="tanh")]
    )
    # Queue, pointer and key encoder are weights: compared too.
    model = MoCo(encoder, projection_dim=3, queue_size=16, momentum=0.9, temperature=0.5, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.5))
    return model


def dann():
    keras.utils.set_random_seed(0)
    features = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
    labels = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    domains = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)])
    model = DANN(features, labels, domains, factor=0.0, domain_loss_weight=1.5)
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    return model


def datasets():
    # Global batches of 8, unshuffled: every run sees the same batches in the same order.
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(32, 8, 8, 1)).astype("float32")
    labels = rng.integers(0, 3, size=32).astype("int64")
    v1 = rng.normal(size=(32, 4, 4, 1)).astype("float32")
    v2 = (v1 + 0.3 * rng.normal(size=v1.shape)).astype("float32")
    xs = rng.normal(size=(32, 4)).astype("float32")
    ys = rng.integers(0, 3, size=32).astype("int64")
    xt = (rng.normal(size=(32, 4)) + 1.5).astype("float32")
    return {
        "classifier": tf.data.Dataset.from_tensor_slices((images, labels)).batch(8),
        "simclr": tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8),
        "moco": tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8),
        "dann": domain_pairs(xs, ys, xt, batch_size=8, shuffle=False),
    }


BUILDERS = {"classifier": classifier, "simclr": simclr, "moco": moco, "dann": dann}


def callbacks_for(name):
    return [GradientReversalSchedule(max_factor=0.8)] if name == "dann" else []


class ExitAtEpoch(keras.callbacks.Callback):
    """Kills the process (no cleanup, like a lost machine) when `epoch` begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            sys.stdout.flush()
            os._exit(INTERRUPT_EXIT_CODE)


def train_all(strategy, results, use_keras_fit=False, prefix=""):
    data = datasets()
    for name, builder in BUILDERS.items():
        with strategy.scope():
            model = builder()
        if use_keras_fit:
            history = model.fit(data[name], epochs=EPOCHS, callbacks=callbacks_for(name), verbose=0, shuffle=False)
        else:
            history = distribute.fit(model, data[name], epochs=EPOCHS, callbacks=callbacks_for(name), verbose=0)
        key = f"{prefix}{name}{'_keras' if use_keras_fit else ''}"
        results[f"{key}/loss"] = np.asarray(history.history["loss"])
        for i, weight in enumerate(model.get_weights()):
            results[f"{key}/w{i}"] = weight


def keras_fit_error(strategy):
    # Keras's own `fit` under this strategy, with BackupAndRestore: the error it raises (or "").
    with strategy.scope():
        model = classifier()
    backup = os.path.join(sys.argv[3], "backup_and_restore")
    try:
        model.fit(
            datasets()["classifier"],
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[keras.callbacks.BackupAndRestore(backup)],
        )
    except Exception as error:  # noqa: BLE001 - the point is to record what breaks
        return f"{type(error).__name__}: {str(error)[:300]}", os.path.exists(backup)
    return "", os.path.exists(backup)


def checkpointed_classifier(strategy, checkpoint_dir, interrupt):
    with strategy.scope():
        model = classifier()
    callbacks = [ExitAtEpoch(INTERRUPT_AT_EPOCH)] if interrupt else []
    history = distribute.fit(
        model, datasets()["classifier"], epochs=EPOCHS, callbacks=callbacks, checkpoint_dir=checkpoint_dir, verbose=0
    )
    return model, history


def main():
    mode, out = sys.argv[1], sys.argv[2]
    results = {}
    meta = {"mode": mode}
    if mode == "reference":
        # Two logical CPUs for a MirroredStrategy run too (the default strategy uses one device).
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.get_strategy()
        train_all(strategy, results)
        train_all(strategy, results, use_keras_fit=True)
        train_all(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), results, prefix="mirrored_")
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        meta["replicas"] = strategy.num_replicas_in_sync
        meta["chief"] = distribute.is_chief(strategy)
        checkpoint_dir = os.path.join(sys.argv[3], "checkpoints")
        if mode == "train":
            meta["keras_fit_error"], meta["backup_dir_written"] = keras_fit_error(strategy)
            train_all(strategy, results)
            # Negative control: negatives from the local batch only, which one process cannot
            # reproduce (the test checks that the comparison would notice).
            with strategy.scope():
                model = simclr(cross_replica=False)
            distribute.fit(model, datasets()["simclr"], epochs=EPOCHS, verbose=0)
            for i, weight in enumerate(model.get_weights()):
                results[f"simclr_local/w{i}"] = weight
            np.savez(out, meta=json.dumps(meta), **results)
            checkpointed_classifier(strategy, checkpoint_dir, interrupt=True)
            raise AssertionError("the interrupted run should have exited")
        model, history = checkpointed_classifier(strategy, checkpoint_dir, interrupt=False)
        meta["resumed_epochs"] = history.epoch
        meta["checkpoints"] = sorted(os.listdir(checkpoint_dir))
        # A checkpoint folder only the chief can read: the other worker would restart from
        # epoch 0 and diverge silently; every worker refuses instead.
        private = checkpoint_dir if meta["chief"] else os.path.join(sys.argv[3], "empty")
        try:
            checkpointed_classifier(strategy, private, interrupt=False)
            meta["unshared_error"] = ""
        except ValueError as error:
            meta["unshared_error"] = str(error)
        results["resumed/loss"] = np.asarray(history.history["loss"])
        for i, weight in enumerate(model.get_weights()):
            results[f"resumed/w{i}"] = weight
    np.savez(out, meta=json.dumps(meta), **results)


if __name__ == "__main__":
    main()
