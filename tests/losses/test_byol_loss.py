import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import BYOLLoss
from keras_transfer.losses import byol_loss
from keras_transfer.losses import simsiam_loss
from tests.test_case import TestCase


def numpy_byol(p1, p2, z1, z2, per_example=False):
    """The official code's regression loss (`||p/|p| - z/|z|||^2`, the two views' terms summed), float64."""

    def normalized_mse(p, z):
        p, z = np.asarray(p, "float64"), np.asarray(z, "float64")
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        return ((p - z) ** 2).sum(axis=1)

    terms = normalized_mse(p1, z2) + normalized_mse(p2, z1)
    return terms if per_example else terms.mean()


class BYOLLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(1)
        self.p1, self.p2, self.z1, self.z2 = rng.normal(size=(4, 7, 4)).astype("float32")

    def test_matches_numpy_and_is_affine_in_simsiam(self):
        args = (self.p1, self.p2, self.z1, self.z2)
        expected = numpy_byol(*args)
        self.assertAllClose(byol_loss(*args), expected, atol=1e-5)
        value = byol_loss(*(t.astype("float64") for t in args))
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
        self.assertAllClose(value, expected, atol=1e-12, rtol=1e-12)
        self.assertAllClose(byol_loss(*args), 4.0 + 4.0 * simsiam_loss(*args), atol=1e-5)

    def test_stop_gradient_and_finite_differences(self):
        tensors = [tf.Variable(t) for t in (self.p1, self.p2, self.z1, self.z2)]
        with tf.GradientTape() as tape:
            value = byol_loss(*tensors)
        grads = tape.gradient(value, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.assertAllClose(grads[2], np.zeros_like(self.z1), atol=0.0)
        self.assertAllClose(grads[3], np.zeros_like(self.z2), atol=0.0)
        z1, z2 = self.z1[:3].astype("float64"), self.z2[:3].astype("float64")
        self.run_gradient_check(lambda a, b: byol_loss(a, b, z1, z2), [self.p1[:3], self.p2[:3]])

    def test_loss_class(self):
        y_true = np.stack([self.z1, self.z2], axis=1)
        y_pred = np.stack([self.p1, self.p2], axis=1)
        terms = numpy_byol(self.p1, self.p2, self.z1, self.z2, per_example=True)
        self.assertAllClose(BYOLLoss()(y_true, y_pred), terms.mean(), atol=1e-5)
        weights = np.linspace(0.0, 1.0, 7).astype("float32")
        self.assertAllClose(BYOLLoss()(y_true, y_pred, sample_weight=weights), (terms * weights).mean(), atol=1e-5)
        restored = BYOLLoss.from_config(BYOLLoss(reduction="sum").get_config())
        self.assertAllClose(restored(y_true, y_pred), terms.sum(), atol=1e-4)
        self.assertRaisesValueError(["(batch, 2, dim)", "y_true.shape=(7, 3, 4)"], BYOLLoss(),
                                    np.concatenate([y_true, y_true[:, :1]], 1), y_pred)  # fmt: skip
