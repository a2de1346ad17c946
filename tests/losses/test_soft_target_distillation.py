"""SoftTargetDistillation: Hinton et al.'s T^2 * KL of softened softmaxes against NumPy."""

import keras
import numpy as np

from keras_transfer import losses
from tests.test_case import TestCase


def reference(teacher, student, temperature):
    """T^2 * mean_batch KL(softmax(t / T) || softmax(s / T)) in float64."""

    def log_softmax(z):
        z = np.float64(z) / temperature
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    log_p, log_q = log_softmax(teacher), log_softmax(student)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1).mean() * temperature**2


class SoftTargetDistillationTest(TestCase):
    def test_matches_numpy(self):
        rng = np.random.default_rng(1)
        teacher, student = rng.normal(size=(6, 5)) * 4, rng.normal(size=(6, 5))
        for temperature in (0.5, 1.0, 4.0):
            loss = losses.SoftTargetDistillation(temperature)
            actual = loss.compute_loss(teacher.astype("float32"), student.astype("float32"))
            self.assertAllClose(actual, reference(teacher, student, temperature), atol=1e-5, rtol=1e-5)

    def test_float16_logits_give_a_finite_float32_loss(self):
        teacher = np.array([[60000.0, -60000.0, 0.0]], "float16")
        student = np.array([[-60000.0, 60000.0, 0.0]], "float16")
        loss = losses.SoftTargetDistillation(1.0).compute_loss(teacher, student)
        self.assertEqual(keras.backend.standardize_dtype(loss.dtype), "float32")
        self.assertAllClose(loss, reference(teacher, student, 1.0), rtol=1e-5)

    def test_config_round_trip(self):
        loss = losses.SoftTargetDistillation(3.0)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        self.assertIsInstance(restored, losses.SoftTargetDistillation)
        self.assertEqual(restored.temperature, 3.0)

    def test_errors(self):
        for value in (0, -1.0, float("inf")):
            self.assertRaisesValueError(
                f"`temperature` must be a positive finite number. Received: temperature={value!r}",
                losses.SoftTargetDistillation,
                value,
            )
