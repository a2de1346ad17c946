import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import SigLIPLoss
from keras_transfer.losses import siglip_loss
from tests.test_case import TestCase


def numpy_siglip_loss(image, text, scale, bias, normalize=True):
    """Zhai et al. 2023, Algorithm 1, in float64 NumPy: the per-image sums over texts."""
    image, text = np.asarray(image, "float64"), np.asarray(text, "float64")
    if normalize:
        image = image / np.linalg.norm(image, axis=1, keepdims=True)
        text = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = scale * image @ text.T + bias
    labels = 2 * np.eye(len(image)) - 1
    return np.sum(np.log1p(np.exp(-labels * logits)), axis=1)  # -log sigmoid(z L)


class SigLIPLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(5)
        self.image = rng.normal(size=(6, 5)).astype("float32")
        self.text = rng.normal(size=(6, 5)).astype("float32")

    def test_matches_numpy_formula(self):
        for scale, bias in ((10.0, -10.0), (1.0, 0.0), (100.0, 3.0)):
            expected = numpy_siglip_loss(self.image, self.text, scale, bias).sum() / 6
            self.assertAllClose(siglip_loss(self.image, self.text, scale, bias), expected, atol=1e-5, rtol=1e-5)

    def test_known_value_and_float64(self):
        # Orthonormal matching pairs: positives at s + b, negatives at b.
        eye = np.eye(4)
        expected = np.log1p(np.exp(-(3.0 - 1.0))) + 3 * np.log1p(np.exp(-1.0))
        value = siglip_loss(eye, eye, 3.0, -1.0)
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
        self.assertAllClose(value, expected, atol=1e-12, rtol=0)

    def test_stable_at_large_logits(self):
        # |logits| = 110: the naive log(sigmoid) underflows; softplus does not.
        value = siglip_loss(self.image, self.image, 100.0, -10.0)
        self.assertTrue(np.isfinite(float(value)))
        self.assertAllClose(value, numpy_siglip_loss(self.image, self.image, 100.0, -10.0).mean(), rtol=1e-5)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(
            lambda i, t, s, b: siglip_loss(i, t, s, b),
            [self.image[:4, :3], self.text[:4, :3], np.array(5.0), np.array(-2.0)],
        )

    def test_loss_class_matches_function_and_weights_images(self):
        loss = SigLIPLoss(logit_scale=20.0, logit_bias=-5.0)
        self.assertAllClose(loss(self.image, self.text), siglip_loss(self.image, self.text, 20.0, -5.0), atol=1e-6)
        weights = np.array([1, 0, 2, 0, 1, 1], "float32")
        per_image = numpy_siglip_loss(self.image, self.text, 20.0, -5.0)
        self.assertAllClose(
            loss(self.image, self.text, sample_weight=weights), (per_image * weights).sum() / 6, atol=1e-5
        )
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(clone, SigLIPLoss)
        self.assertEqual(clone.get_config(), loss.get_config())

    def test_loss_class_in_compile_fit_and_mixed_precision(self):
        def build():
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(5)])
            model.compile(optimizer="sgd", loss=SigLIPLoss())
            return model

        self.run_fit_test(build(), self.image, self.text, batch_size=6, steps=2)
        self.run_mixed_precision_test(build, self.image, self.text, batch_size=6)

    def test_errors(self):
        self.assertRaisesValueError(
            ["at least 2 pairs", "batch of 1"], siglip_loss, self.image[:1], self.text[:1], 10.0, -10.0
        )
        self.assertRaisesValueError(["same number of pairs"], siglip_loss, self.image, self.text[:4], 10.0, -10.0)
        for bad in (0.0, -1.0, float("nan")):
            self.assertRaisesValueError("`logit_scale` must be a positive", siglip_loss, self.image, self.text, bad, 0)
            self.assertRaisesValueError("`logit_scale` must be a positive", SigLIPLoss, logit_scale=bad)
        for bad in (float("nan"), float("inf")):
            self.assertRaisesValueError(
                ["`logit_bias` must be a finite number", f"logit_bias={bad}"], siglip_loss, self.image, self.text,
                10.0, bad,
            )  # fmt: skip
        self.assertRaisesValueError(["`logit_bias`", "Python number"], SigLIPLoss, logit_bias=tf.constant(1.0))
        bad = self.text.copy()
        bad[1, 2] = np.inf
        self.assertRaisesValueError(["finite", "1 NaN or infinite"], siglip_loss, self.image, bad, 10.0, -10.0)
        self.assertRaisesValueError("at least 2 pairs", SigLIPLoss(), self.image[:1], self.text[:1])
