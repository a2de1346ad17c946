import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import CORALLoss
from keras_transfer.losses import coral_loss
from tests.test_case import TestCase


def _numpy_coral(source, target):
    """Sun & Saenko (2016), eq. 1-2: ||C_S - C_T||_F^2 / (4 d^2), unbiased covariances."""
    source = source.reshape(len(source), -1)
    target = target.reshape(len(target), -1)
    d = source.shape[1]
    cs = np.cov(source, rowvar=False, ddof=1)
    ct = np.cov(target, rowvar=False, ddof=1)
    return np.sum((cs - ct) ** 2) / (4 * d * d)


class CoralLossTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.source = rng.normal(size=(9, 5))
        cls.target = rng.normal(size=(6, 5)) @ rng.normal(size=(5, 5)) + 1.0

    def test_matches_numpy_reference(self):
        self.assertAllClose(coral_loss(self.source, self.target), _numpy_coral(self.source, self.target), rtol=1e-5)
        # Feature maps are flattened.
        s4, t4 = self.source.reshape(9, 5, 1), self.target.reshape(6, 5, 1)
        self.assertAllClose(coral_loss(s4, t4), _numpy_coral(self.source, self.target), rtol=1e-5)
        # Identical second-order statistics (a shift only) give zero.
        self.assertAllClose(coral_loss(self.source, self.source + 3.0), 0.0, atol=1e-6)

    def test_loss_class(self):
        loss = CORALLoss()
        self.assertAllClose(loss(self.source, self.target), _numpy_coral(self.source, self.target), rtol=1e-5)
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(restored, CORALLoss)
        self.assertAllClose(restored(self.source, self.target), _numpy_coral(self.source, self.target), rtol=1e-5)

    def test_gradients_against_finite_differences(self):
        def fn(source, target):
            features_s = tf.cast(source, "float32")
            return coral_loss(features_s, tf.cast(target, "float32"))

        # float32 inside: moderate tolerances.
        self.run_gradient_check(fn, [self.source[:4, :3], self.target[:3, :3]], eps=1e-2, atol=2e-3, rtol=2e-2)

    def test_mixed_precision_inputs(self):
        value = coral_loss(tf.constant(self.source, "float16"), tf.constant(self.target, "float16"))
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, _numpy_coral(self.source, self.target), rtol=2e-2)

    def test_errors(self):
        self.assertRaisesValueError(
            ["`source_features`", "at least 2 examples", "(1, 5)"], coral_loss, self.source[:1], self.target
        )
        self.assertRaisesValueError(
            ["`target_features`", "at least 2 examples"], coral_loss, self.source, self.target[:1]
        )
        self.assertRaisesValueError(["same feature size", "5", "4"], coral_loss, self.source, self.target[:, :4])
        self.assertRaisesValueError(["`source_features`", "shape (n, d)"], coral_loss, np.ones(4), self.target)

    def test_dynamic_batch_of_one_is_finite(self):
        fn = tf.function(coral_loss, input_signature=[tf.TensorSpec((None, 3)), tf.TensorSpec((None, 3))])
        value = fn(tf.ones((1, 3)), tf.random.normal((4, 3)))
        self.assertTrue(np.isfinite(value.numpy()))
