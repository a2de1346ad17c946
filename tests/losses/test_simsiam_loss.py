import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import SimSiamLoss
from keras_transfer.losses import simsiam_loss
from tests.test_case import TestCase


def numpy_negative_cosine(p, z):
    """D(p, z) = -cos(p, z) per row, float64 NumPy (the paper's Algorithm 1)."""
    p, z = np.asarray(p, "float64"), np.asarray(z, "float64")
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    return -(p * z).sum(axis=1)


def numpy_simsiam(p1, p2, z1, z2, per_example=False):
    """L = D(p1, z2) / 2 + D(p2, z1) / 2 (mean over the batch unless `per_example`)."""
    terms = 0.5 * numpy_negative_cosine(p1, z2) + 0.5 * numpy_negative_cosine(p2, z1)
    return terms if per_example else terms.mean()


class SimSiamLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.p1, self.p2, self.z1, self.z2 = rng.normal(size=(4, 6, 5)).astype("float32")

    def test_matches_numpy(self):
        expected = numpy_simsiam(self.p1, self.p2, self.z1, self.z2)
        self.assertAllClose(simsiam_loss(self.p1, self.p2, self.z1, self.z2), expected, atol=1e-6)
        value = simsiam_loss(*(t.astype("float64") for t in (self.p1, self.p2, self.z1, self.z2)))
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
        self.assertAllClose(value, expected, atol=1e-12, rtol=1e-12)
        # Half-precision inputs are computed in float32.
        value = simsiam_loss(*(t.astype("float16") for t in (self.p1, self.p2, self.z1, self.z2)))
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float32")
        self.assertAllClose(value, expected, atol=2e-3)
        # Bounds: -1 when each prediction points along its target, +1 when opposite; scale-invariant.
        self.assertAllClose(simsiam_loss(self.z2, self.z1, 3.0 * self.z1, 0.5 * self.z2), -1.0)
        self.assertAllClose(simsiam_loss(self.z2, self.z1, -self.z1, -self.z2), 1.0)

    def test_stop_gradient_on_the_targets(self):
        tensors = [tf.Variable(t) for t in (self.p1, self.p2, self.z1, self.z2)]
        with tf.GradientTape() as tape:
            value = simsiam_loss(*tensors)
        grads = tape.gradient(value, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.assertGreater(float(np.abs(grads[0]).max()), 1e-3)
        self.assertGreater(float(np.abs(grads[1]).max()), 1e-3)
        self.assertAllClose(grads[2], np.zeros_like(self.z1), atol=0.0)
        self.assertAllClose(grads[3], np.zeros_like(self.z2), atol=0.0)

    def test_prediction_gradients_match_finite_differences(self):
        # With the targets held fixed the stop-gradient changes nothing: plain finite differences apply.
        z1, z2 = self.z1[:4, :3].astype("float64"), self.z2[:4, :3].astype("float64")
        self.run_gradient_check(lambda a, b: simsiam_loss(a, b, z1, z2), [self.p1[:4, :3], self.p2[:4, :3]])

    def test_loss_class(self):
        y_true = np.stack([self.z1, self.z2], axis=1)
        y_pred = np.stack([self.p1, self.p2], axis=1)
        loss = SimSiamLoss()
        self.assertAllClose(loss(y_true, y_pred), numpy_simsiam(self.p1, self.p2, self.z1, self.z2), atol=1e-6)
        weights = np.arange(6, dtype="float32")
        terms = numpy_simsiam(self.p1, self.p2, self.z1, self.z2, per_example=True)
        self.assertAllClose(loss(y_true, y_pred, sample_weight=weights), (terms * weights).mean(), atol=1e-6)
        self.assertEqual(SimSiamLoss().dtype, "float32")  # float32 under mixed_float16 too
        restored = SimSiamLoss.from_config(SimSiamLoss(name="s", reduction="sum").get_config())
        self.assertEqual((restored.name, restored.reduction), ("s", "sum"))
        self.assertAllClose(restored(y_true, y_pred), terms.sum(), atol=1e-5)

    def test_errors(self):
        self.assertRaisesValueError(["2-D", "p1.shape=(5,)"], simsiam_loss, self.p1[0], self.p2, self.z1, self.z2)
        self.assertRaisesValueError(
            ["same shape", "z2.shape=(6, 4)"], simsiam_loss, self.p1, self.p2, self.z1, self.z2[:, :4]
        )
        self.assertRaisesValueError(
            ["(batch, 2, dim)", "y_pred.shape=(6, 3, 5)"],
            SimSiamLoss(),
            np.stack([self.z1, self.z2], 1),
            np.stack([self.p1, self.p2, self.p1], 1),
        )
