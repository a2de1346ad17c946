import keras
import numpy as np
import tensorflow as tf

from keras_transfer.recipes import adapt_batch_norm
from tests.test_case import TestCase


def _model():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(), keras.layers.Dropout(0.5)],
        name="inner",
    )
    inputs = keras.Input((3,))
    outputs = keras.layers.BatchNormalization(center=False)(keras.layers.Dense(2)(inner(inputs)))
    return keras.Model(inputs, outputs), inner


class AdaptBatchNormTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.x = np.random.default_rng(0).normal(3.0, 2.0, size=(48, 3)).astype("float32")

    def _reference(self, model, inner):
        # Li et al. (2016): each BN layer gets the mean/variance of its inputs over the target
        # set, with the earlier BN layers already adapted (NumPy, layer by layer).
        dense1, bn1 = inner.layers[0], inner.layers[1]
        a = self.x.astype("float64") @ dense1.kernel.numpy() + dense1.bias.numpy()
        a_norm = (a - a.mean(0)) / np.sqrt(a.var(0) + bn1.epsilon) * bn1.gamma.numpy() + bn1.beta.numpy()
        dense2 = model.layers[2]
        b = a_norm @ dense2.kernel.numpy() + dense2.bias.numpy()
        return (a.mean(0), a.var(0)), (b.mean(0), b.var(0))

    def _assert_statistics(self, model, inner, report, first, second):
        self.assertEqual(sorted(report.values()), [48, 48])
        for bn, (mean, variance) in ((inner.layers[1], first), (model.layers[3], second)):
            self.assertAllClose(bn.moving_mean, mean, atol=1e-5)
            self.assertAllClose(bn.moving_variance, variance, atol=1e-4, rtol=1e-5)

    def test_full_batch_is_exact_adabn(self):
        model, inner = _model()
        weights = {v.path: v.numpy() for v in model.trainable_weights}
        (m1, v1), (m2, v2) = self._reference(model, inner)
        report = adapt_batch_norm(model, self.x, batch_size=48)
        self._assert_statistics(model, inner, report, (m1, v1), (m2, v2))
        bn1 = inner.layers[1]
        for v in model.trainable_weights:
            np.testing.assert_array_equal(v.numpy(), weights[v.path])
        # The layers are restored: inference uses the new moving statistics.
        a = inner.layers[0](self.x).numpy()
        expected = (a - m1) / np.sqrt(v1 + bn1.epsilon) * bn1.gamma.numpy() + bn1.beta.numpy()
        self.assertAllClose(inner(self.x, training=False), expected, atol=1e-4)

    def test_small_batches_pool_the_first_layer_exactly(self):
        model, inner = _model()
        (m1, v1), _ = self._reference(model, inner)
        dataset = tf.data.Dataset.from_tensor_slices((self.x, np.zeros(48))).batch(10)
        adapt_batch_norm(model, dataset)
        self.assertAllClose(inner.layers[1].moving_mean, m1, atol=1e-5)
        self.assertAllClose(inner.layers[1].moving_variance, v1, atol=1e-4, rtol=1e-5)

    def test_layerwise_is_exact_at_any_batch_size(self):
        model, inner = _model()
        (m1, v1), (m2, v2) = self._reference(model, inner)
        for x in (self.x, tf.data.Dataset.from_tensor_slices((self.x, np.zeros(48))).batch(10)):
            report = adapt_batch_norm(model, x, batch_size=7, layerwise=True)
            self._assert_statistics(model, inner, report, (m1, v1), (m2, v2))
        # The one-pass default at the same batch size is only approximate for the second layer.
        adapt_batch_norm(model, self.x, batch_size=7)
        self.assertNotAllClose(model.layers[3].moving_variance, v2, atol=1e-3, rtol=1e-3)
        self.assertRaisesValueError(
            ["`layerwise`", "Received: layerwise='yes'"], adapt_batch_norm, model, self.x, layerwise="yes"
        )

    def test_frozen_model_and_errors(self):
        model, inner = _model()
        model.trainable = False
        adapt_batch_norm(model, self.x)
        self.assertNotAllClose(inner.layers[1].moving_mean, np.zeros(4))
        plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        self.assertRaisesValueError(
            ["`model` must contain at least one `BatchNormalization`"], adapt_batch_norm, plain, self.x
        )
        self.assertRaisesValueError(["`x` must contain at least one example"], adapt_batch_norm, model, self.x[:0])
        self.assertRaisesValueError(
            ["`batch_size`", "Received: batch_size=0"], adapt_batch_norm, model, self.x, batch_size=0
        )
        bad = self.x.copy()
        bad[1, 1] = np.inf
        self.assertRaisesValueError(["`x` must contain only finite values"], adapt_batch_norm, model, bad)
