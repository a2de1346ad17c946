"""Interrupted training resumes to the same weights as uninterrupted training.

For a recipe classifier and each custom-step model: `fit` under
`keras.callbacks.BackupAndRestore` that dies after an epoch, then a new process-like
start (a freshly built model, the same command) that resumes, ends with the same
weights and optimizer state as one uninterrupted `fit`; and `.keras` save -> reload ->
`fit` again equals going on with the model in memory.
"""

import os

import keras
import numpy as np

import keras_transfer as kt
from tests.test_case import TestCase

EPOCHS = 3


class _Interrupt(Exception):
    pass


class _DieAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt(f"killed after epoch {epoch}")


def _images(n, seed=0, size=8):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype("float32")


def _encoder():
    return keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(6),
    ])


def classifier():
    model = kt.recipes.build_classifier("simple_cnn", 3, (8, 8, 1), dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model, (_images(12), np.arange(12) % 3), {"batch_size": 4}


def simclr():
    model = kt.models.SimCLR(_encoder(), projection_dim=4)
    model.compile(keras.optimizers.Adam(1e-2))
    views = _images(12)
    return model, (((views, views[::-1] * 0.9),),), {"batch_size": 4}


def moco():
    model = kt.models.MoCo(_encoder(), projection_dim=4, queue_size=8, bn_splits=1, momentum=0.9,
                           seed=3)
    model.compile(keras.optimizers.Adam(1e-2))
    views = _images(12)
    return model, (((views, views[::-1] * 0.9),),), {"batch_size": 4}


def clip():
    text = kt.layers.TextTransformerEncoder(20, 5, embedding_dim=8, num_heads=2)
    model = kt.models.CLIP(_encoder(), text, projection_dim=4)
    model.compile(keras.optimizers.Adam(1e-2))
    ids = np.random.default_rng(1).integers(1, 20, (12, 5)).astype("int32")
    return model, ({"images": _images(12), "token_ids": ids},), {"batch_size": 4}


def meta_model():
    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(8, activation="relu"),
                            keras.layers.Dense(1)])
    model = kt.models.MetaModel(net, inner_steps=1, inner_learning_rate=0.01)
    model.compile(keras.optimizers.Adam(1e-2), loss="mse")
    x, y = kt.datasets.sinusoid_tasks(12, k_shot=5, k_query=5, seed=2)
    return model, (x, y), {"batch_size": 4}


BUILDERS = {"classifier": classifier, "SimCLR": simclr, "MoCo": moco, "CLIP": clip,
            "MetaModel": meta_model}


def _state(model):
    values = [v.numpy() for v in model.weights]
    values += [v.numpy() for v in model.optimizer.variables]
    return values


def _build(name):
    keras.utils.set_random_seed(7)
    return BUILDERS[name]()


def _fit(model, data, kwargs, epochs, callbacks=(), initial_epoch=0):
    if isinstance(data[0], tuple) and len(data) == 1 and not isinstance(data[0][0], np.ndarray):
        # One pre-made element ((view_1, view_2),): batch it like simclr_dataset does.
        import tensorflow as tf
        dataset = tf.data.Dataset.from_tensor_slices(data[0]).batch(kwargs["batch_size"])
        return model.fit(dataset, epochs=epochs, verbose=0, callbacks=list(callbacks),
                         initial_epoch=initial_epoch)
    return model.fit(*data, epochs=epochs, verbose=0, shuffle=False, callbacks=list(callbacks),
                     initial_epoch=initial_epoch, **kwargs)


class ResumeTest(TestCase):
    def check_resume(self, name):
        model, data, kwargs = _build(name)
        _fit(model, data, kwargs, EPOCHS)
        uninterrupted = _state(model)

        backup = os.path.join(self.get_temp_dir(), "backup")
        model, data, kwargs = _build(name)
        with self.assertRaises(_Interrupt):
            _fit(model, data, kwargs, EPOCHS,
                 callbacks=[keras.callbacks.BackupAndRestore(backup), _DieAfterEpoch(0)])
        model, data, kwargs = _build(name)
        _fit(model, data, kwargs, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup)])
        resumed = _state(model)
        self.assertLen(resumed, len(uninterrupted))
        for a, b in zip(resumed, uninterrupted):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5, msg=f"{name}: resumed run differs")

    def check_reload_continues(self, name):
        model, data, kwargs = _build(name)
        _fit(model, data, kwargs, 1)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        _fit(model, data, kwargs, 2, initial_epoch=1)
        _fit(reloaded, data, kwargs, 2, initial_epoch=1)
        for a, b in zip(_state(reloaded), _state(model)):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5, msg=f"{name}: reloaded run differs")

    def test_classifier(self):
        self.check_resume("classifier")
        self.check_reload_continues("classifier")

    def test_simclr(self):
        self.check_resume("SimCLR")
        self.check_reload_continues("SimCLR")

    def test_moco_with_its_queue(self):
        self.check_resume("MoCo")
        self.check_reload_continues("MoCo")

    def test_clip(self):
        self.check_resume("CLIP")
        self.check_reload_continues("CLIP")

    def test_meta_model(self):
        self.check_resume("MetaModel")
        self.check_reload_continues("MetaModel")
