import numpy as np
import keras
import tensorflow as tf

from keras_transfer.models import ProtoNet
from tests.test_case import TestCase


def episodes(e=2, n=3, k=2, q=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(e, n * k, d)).astype("float32")
    sy = np.tile(np.repeat(np.arange(n), k), (e, 1)).astype("int64")
    qx = rng.normal(size=(e, q, d)).astype("float32")
    qy = rng.integers(0, n, size=(e, q)).astype("int64")
    return (sx, sy, qx), qy


def encoder(d=5):
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(4, activation="tanh")])


class ProtoNetTest(TestCase):
    def build(self, **kwargs):
        keras.utils.set_random_seed(0)
        model = ProtoNet(encoder(), n_way=3, **kwargs)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    def test_logits_match_numpy(self):
        model = self.build()
        (sx, sy, qx), qy = episodes()
        logits = model.predict((sx, sy, qx), verbose=0)
        w, b = [v.numpy() for v in model.encoder.weights]
        for e in range(2):
            zs, zq = np.tanh(sx[e] @ w + b), np.tanh(qx[e] @ w + b)
            protos = np.stack([zs[sy[e] == c].mean(0) for c in range(3)])
            expected = -((zq[:, None, :] - protos[None]) ** 2).sum(-1)
            self.assertAllClose(logits[e], expected, atol=1e-5)
        cosine = self.build(distance="cosine", temperature=0.5)
        out = cosine.predict((sx, sy, qx), verbose=0)
        self.assertTrue(np.all(np.abs(out) <= 2.0 + 1e-5))

    def test_gradients_fit_save_export_mixed_precision(self):
        model = self.build()
        x, y = episodes(e=4)
        self.run_fit_test(model, x, y, batch_size=2, steps=2)
        self.run_serialization_test(model, x)
        self.run_export_test(model, x)
        self.run_mixed_precision_test(self.build, x, y, batch_size=2)

        def loss_of_support(sx):
            protos = model.prototypes(sx, tf.constant(x[1][:1]))
            return tf.reduce_sum(tf.sin(protos) * tf.range(1.0, 5.0, dtype="float64"))

        self.run_gradient_check(loss_of_support, [np.random.default_rng(1).normal(size=(1, 6, 4))])

    def test_errors(self):
        self.assertRaisesValueError("n_way", ProtoNet, encoder(), n_way=1)
        self.assertRaisesValueError("distance", ProtoNet, encoder(), n_way=3, distance="l1")
        model = self.build()
        (sx, sy, qx), _ = episodes()
        self.assertRaisesValueError("same feature shape", model, (sx, sy, qx[..., :3]))
