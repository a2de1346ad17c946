import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import CLIPLoss
from keras_transfer.losses import clip_loss
from tests.test_case import TestCase


def numpy_clip_loss(image, text, scale, normalize=True):
    """Radford et al. 2021, Fig. 3, written in float64 NumPy."""
    image, text = np.asarray(image, "float64"), np.asarray(text, "float64")
    if normalize:
        image = image / np.linalg.norm(image, axis=1, keepdims=True)
        text = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = scale * image @ text.T

    def ce(rows):  # cross-entropy of row i against target i
        rows = rows - rows.max(axis=1, keepdims=True)
        log_p = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        return -np.diag(log_p)

    return 0.5 * (ce(logits) + ce(logits.T))


class ClipLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(3)
        self.image = rng.normal(size=(6, 5)).astype("float32")
        self.text = rng.normal(size=(6, 5)).astype("float32")

    def test_matches_numpy_formula(self):
        for scale in (1.0, 1 / 0.07, 100.0):
            expected = numpy_clip_loss(self.image, self.text, scale).mean()
            self.assertAllClose(clip_loss(self.image, self.text, scale), expected, atol=1e-5, rtol=1e-5)

    def test_float64_stays_float64_with_python_scale(self):
        # ops.cast(1 / 0.07, "float64") would round the scale through float32 (1e-8 relative).
        image, text = self.image.astype("float64"), self.text.astype("float64")
        for scale in (1 / 0.07, 0.3):
            value = clip_loss(image, text, scale)
            self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
            self.assertAllClose(value, numpy_clip_loss(image, text, scale).mean(), atol=1e-12, rtol=0)
        value = clip_loss(image, text, tf.constant(1 / 0.07, tf.float64))
        self.assertAllClose(value, numpy_clip_loss(image, text, 1 / 0.07).mean(), atol=1e-12, rtol=0)

    def test_already_normalised_inputs_unchanged_by_normalize(self):
        image = self.image / np.linalg.norm(self.image, axis=1, keepdims=True)
        text = self.text / np.linalg.norm(self.text, axis=1, keepdims=True)
        expected = numpy_clip_loss(image, text, 10.0, normalize=False).mean()
        self.assertAllClose(clip_loss(image, text, 10.0, normalize=False), expected, atol=1e-5)
        self.assertAllClose(clip_loss(image, text, 10.0, normalize=True), expected, atol=1e-5)

    def test_known_value_identical_orthogonal_pairs(self):
        # Orthonormal matching pairs: L = s * Id, CE = log(1 + (N-1) e^{-s}).
        eye = np.eye(4, dtype="float32")
        self.assertAllClose(clip_loss(eye, eye, 3.0), np.log(1 + 3 * np.exp(-3.0)), atol=1e-6)

    def test_tensor_scale_and_float16_inputs_stay_float32(self):
        value = clip_loss(self.image.astype("float16"), self.text.astype("float16"), tf.constant(100.0))
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float32")
        expected = numpy_clip_loss(self.image.astype("float16"), self.text.astype("float16"), 100.0).mean()
        self.assertAllClose(value, expected, atol=1e-4, rtol=1e-4)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(
            lambda i, t, s: clip_loss(i, t, s),
            [self.image[:4, :3], self.text[:4, :3], np.array(5.0)],
        )

    def test_loss_class_matches_function_and_weights_pairs(self):
        loss = CLIPLoss(logit_scale=20.0)
        self.assertAllClose(loss(self.image, self.text), clip_loss(self.image, self.text, 20.0), atol=1e-6)
        weights = np.array([1, 0, 2, 0, 1, 1], "float32")
        per_pair = numpy_clip_loss(self.image, self.text, 20.0)
        self.assertAllClose(
            loss(self.image, self.text, sample_weight=weights), (per_pair * weights).sum() / 6, atol=1e-5
        )
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        self.assertIsInstance(clone, CLIPLoss)
        self.assertEqual(clone.get_config(), loss.get_config())

    def test_loss_class_in_compile_fit_and_mixed_precision(self):
        # A two-tower "model" whose outputs are compared by CLIPLoss via y_true.
        def build():
            inputs = keras.Input((5,))
            model = keras.Sequential([inputs, keras.layers.Dense(5)])
            model.compile(optimizer="sgd", loss=CLIPLoss(logit_scale=10.0))
            return model

        model = build()
        self.run_fit_test(model, self.image, self.text, batch_size=6, steps=2)
        self.run_mixed_precision_test(build, self.image, self.text, batch_size=6)

    def test_errors(self):
        self.assertRaisesValueError(
            ["same number of pairs", "6 rows", "4 rows"], clip_loss, self.image, self.text[:4], 10.0
        )
        self.assertRaisesValueError(["at least 2 pairs", "batch of 1"], clip_loss, self.image[:1], self.text[:1], 10.0)
        self.assertRaisesValueError("same embedding size", clip_loss, self.image, self.text[:, :3], 10.0)
        self.assertRaisesValueError("2-D tensor", clip_loss, self.image[None], self.text[None], 10.0)
        for bad in (0.0, -1.0, float("nan")):
            self.assertRaisesValueError(
                "`logit_scale` must be a positive finite number", clip_loss, self.image, self.text, bad
            )
            self.assertRaisesValueError("`logit_scale` must be a positive", CLIPLoss, logit_scale=bad)
        self.assertRaisesValueError("`logit_scale` must be a positive", CLIPLoss, logit_scale=tf.constant(2.0))
        # CLIP's log-scale variable is refused: the multiplier is `clip_model.logit_scale`.
        log_scale = keras.Variable(np.log(20.0), dtype="float32", name="log_logit_scale")
        self.assertRaisesValueError(
            ["not its log", "log_logit_scale", "clip_model.logit_scale"], clip_loss, self.image, self.text, log_scale
        )
        bad = self.image.copy()
        bad[0, 0] = np.nan
        self.assertRaisesValueError(["finite", "1 NaN"], clip_loss, bad, self.text, 10.0)
        self.assertRaisesValueError("at least 2 pairs", CLIPLoss(), self.image[:1], self.text[:1])
