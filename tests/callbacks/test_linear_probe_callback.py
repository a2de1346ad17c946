import keras
import numpy as np
import tensorflow as tf

from keras_transfer.callbacks import LinearProbeCallback
from keras_transfer.models import SimCLR
from keras_transfer.recipes import linear_evaluation
from tests.test_case import TestCase


class LinearProbeCallbackTest(TestCase):
    def test_reports_every_n_epochs(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(24, 4, 4, 1)).astype("float32")
        y = np.arange(24) % 3
        encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
        model = SimCLR(encoder, projection_dim=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        pairs = tf.data.Dataset.from_tensor_slices(((x, x + 0.1),)).batch(8)
        callback = LinearProbeCallback(x, y, x, y, every=2, C=1.0)
        history = model.fit(pairs, epochs=3, verbose=0, callbacks=[callback], shuffle=False)
        # Epochs 2 (every=2) and 3 (the last one).
        self.assertEqual([epoch for epoch, _ in callback.history], [1, 2])
        final = linear_evaluation(model, x, y, x, y, C=1.0)["test_accuracy"]
        self.assertAllClose(callback.history[-1][1], final)
        self.assertAllClose(history.history["linear_probe_accuracy"][-1], final)

    def test_every_epoch_logs_no_retracing(self):
        # A new probe model every epoch: evaluated through `predict`, each one retraced Keras's
        # shared predict function and logged "5 out of the last 5 calls ... triggered
        # tf.function retracing" from the fifth epoch on.
        rng = np.random.default_rng(1)
        x = rng.normal(size=(16, 4, 4, 1)).astype("float32")
        y = np.arange(16) % 2
        encoder = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
        model = SimCLR(encoder, projection_dim=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        pairs = tf.data.Dataset.from_tensor_slices(((x, x + 0.1),)).batch(8)
        callback = LinearProbeCallback(x, y, x, y, every=1, C=1.0)
        with self.assertNoLogs("tensorflow", level="WARNING"):
            model.fit(pairs, epochs=6, verbose=0, callbacks=[callback], shuffle=False)
        self.assertEqual([epoch for epoch, _ in callback.history], [0, 1, 2, 3, 4, 5])
        final = linear_evaluation(model, x, y, x, y, C=1.0)["test_accuracy"]
        self.assertAllClose(callback.history[-1][1], final)

    def test_errors(self):
        self.assertRaisesValueError(
            ["`every` must be a positive", "every=0"],
            LinearProbeCallback,
            np.zeros((2, 1)),
            [0, 1],
            np.zeros((2, 1)),
            [0, 1],
            every=0,
        )
