import numpy as np
import tensorflow as tf

from keras_transfer.ops import prediction_entropy
from tests.test_case import TestCase


def numpy_entropy(p, axis=-1):
    """Mean over rows of -sum_c p_c log p_c, with 0 log 0 = 0 (float64)."""
    p = np.asarray(p, "float64")
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return float(np.mean(-terms.sum(axis=axis)))


def numpy_softmax(z, axis=-1):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class PredictionEntropyTest(TestCase):
    def test_logits_and_probabilities_match_numpy(self):
        logits = np.random.default_rng(0).normal(size=(7, 5)).astype("float32") * 3
        expected = numpy_entropy(numpy_softmax(logits))
        self.assertAllClose(prediction_entropy(logits), expected, rtol=1e-5)
        probs = numpy_softmax(logits).astype("float32")
        self.assertAllClose(prediction_entropy(probs, from_logits=False), expected, rtol=1e-5)
        self.assertEqual(prediction_entropy(logits).shape, ())

    def test_extremes_zeros_and_large_logits(self):
        # Uniform: log C; one-hot probabilities (with exact zeros): 0, not NaN.
        self.assertAllClose(prediction_entropy(np.zeros((3, 4), "float32")), np.log(4.0), rtol=1e-6)
        self.assertAllClose(prediction_entropy(np.eye(4, dtype="float32"), from_logits=False), 0.0, atol=1e-7)
        probs = np.array([[0.5, 0.5, 0.0]], "float32")
        self.assertAllClose(prediction_entropy(probs, from_logits=False), np.log(2.0), rtol=1e-6)
        # Logits of 1e4 do not overflow the softmax.
        big = np.array([[1e4, 0.0, -1e4]], "float32")
        self.assertAllClose(prediction_entropy(big), 0.0, atol=1e-6)

    def test_axis_half_precision_and_float64(self):
        logits = np.random.default_rng(1).normal(size=(2, 5, 3))
        expected = numpy_entropy(numpy_softmax(logits, axis=1), axis=1)
        self.assertAllClose(prediction_entropy(logits.astype("float32"), axis=1), expected, rtol=1e-5)
        value = prediction_entropy(logits.astype("float16"))
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, numpy_entropy(numpy_softmax(logits.astype("float16"))), rtol=1e-3)
        value64 = prediction_entropy(logits)
        self.assertEqual(value64.dtype, tf.float64)
        self.assertAllClose(value64, numpy_entropy(numpy_softmax(logits)), rtol=1e-12)

    def test_gradient_matches_finite_differences(self):
        logits = np.random.default_rng(2).normal(size=(3, 4))
        self.run_gradient_check(lambda z: prediction_entropy(z), [logits], eps=1e-6, atol=1e-8, rtol=1e-6)
        probs = numpy_softmax(logits)
        self.run_gradient_check(
            lambda p: prediction_entropy(p, from_logits=False), [probs], eps=1e-6, atol=1e-8, rtol=1e-6
        )

    def test_bad_from_logits(self):
        self.assertRaisesValueError(
            ["`from_logits` must be True", "Received: from_logits='yes'"],
            prediction_entropy,
            np.zeros((1, 2)),
            from_logits="yes",
        )
