import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import dino_loss
from tests.test_case import TestCase


def numpy_dino(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04):
    """The official `DINOLoss.forward` (Caron et al. 2021, Algorithm 1), loop for loop, in float64."""
    student = [np.asarray(s, "float64") / student_temperature for s in student]
    total, terms = 0.0, 0
    for iq, t in enumerate(teacher):
        q = np.asarray(t, "float64") - np.asarray(center, "float64").reshape(-1)
        q = np.exp(q / teacher_temperature - (q / teacher_temperature).max(axis=-1, keepdims=True))
        q = q / q.sum(axis=-1, keepdims=True)
        for v, s in enumerate(student):
            if v == iq:
                continue
            log_p = s - s.max(axis=-1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(axis=-1, keepdims=True))
            total += np.sum(-q * log_p, axis=-1).mean()
            terms += 1
    return total / terms


class DINOLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(4)
        self.student = rng.normal(size=(4, 5, 6)).astype("float32")  # 2 global + 2 local views
        self.teacher = rng.normal(size=(2, 5, 6)).astype("float32")
        self.center = rng.normal(scale=0.3, size=(6,)).astype("float32")

    def test_matches_numpy_two_and_multi_crop(self):
        for views in (2, 3, 4):
            args = (self.student[:views], self.teacher, self.center)
            expected = numpy_dino(*args)
            self.assertAllClose(dino_loss(*args), expected, atol=1e-5, rtol=1e-5, msg=f"{views} views")
            value = dino_loss(*(a.astype("float64") for a in args), 0.2, 0.07)
            self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
            self.assertAllClose(value, numpy_dino(*args, 0.2, 0.07), atol=1e-12, rtol=1e-12)
        # A list of views, a (1, K) centre and a tensor temperature (a schedule) give the same.
        listed = dino_loss(list(self.student), list(self.teacher), self.center[None], 0.1, tf.constant(0.04))
        self.assertAllClose(listed, numpy_dino(self.student, self.teacher, self.center), atol=1e-5, rtol=1e-5)

    def test_centring_and_sharpening(self):
        # Centring: a constant added to every teacher logit of prototype k and to c_k changes nothing.
        shifted = self.teacher + np.arange(6, dtype="float32")
        moved = dino_loss(self.student, shifted, self.center + np.arange(6, dtype="float32"))
        self.assertAllClose(moved, dino_loss(self.student, self.teacher, self.center), atol=1e-5)
        # With a one-hot teacher the loss is the student's cross-entropy to that class; the student
        # matching it sharply costs ~0, the opposite 2 * 4 / tau_s.
        t = np.stack([np.eye(2, dtype="float32") * 4] * 2)
        self.assertAllClose(dino_loss(t, t, np.zeros(2, "float32")), 0.0, atol=1e-4)
        self.assertAllClose(dino_loss(-t, t, np.zeros(2, "float32")), 40.0, atol=1e-3)

    def test_stop_gradient_and_finite_differences(self):
        student, teacher, center = (tf.Variable(a) for a in (self.student, self.teacher, self.center))
        with tf.GradientTape() as tape:
            value = dino_loss(student, teacher, center)
        grads = tape.gradient(value, [student, teacher, center], unconnected_gradients="zero")
        self.assertGreater(float(tf.reduce_max(tf.abs(grads[0]))), 1e-3)
        self.assertAllClose(grads[1], np.zeros_like(self.teacher), atol=0.0)
        self.assertAllClose(grads[2], np.zeros_like(self.center), atol=0.0)
        teacher64, center64 = self.teacher[:, :3].astype("float64"), self.center.astype("float64")
        self.run_gradient_check(
            lambda s: dino_loss(s, teacher64, center64, 0.2, 0.07), [self.student[:3, :3]], eps=1e-5, atol=1e-6
        )

    def test_bad_arguments(self):
        s, t, c = self.student, self.teacher, self.center
        for value in (0.0, -0.1):
            self.assertRaisesValueError(
                ["`student_temperature`", f"student_temperature={value}"], dino_loss, s, t, c, value, 0.04
            )
            self.assertRaisesValueError(
                ["`teacher_temperature`", f"teacher_temperature={value}"], dino_loss, s, t, c, 0.1, value
            )
        self.assertRaisesValueError(
            ["`teacher_temperature` must be below", "teacher_temperature=0.1", "0.04"], dino_loss, s, t, c, 0.1, 0.1
        )
        self.assertRaisesValueError(["at least 2 views", "(1, 5, 6)"], dino_loss, s[:1], t[:1], c)
        self.assertRaisesValueError(["at most as many views"], dino_loss, s[:2], s[:3], c)
        self.assertRaisesValueError(["`student_logits` must be", "(5, 6)"], dino_loss, s[0], t, c)
        self.assertRaisesValueError(["share the batch", "center.shape=(4,)"], dino_loss, s, t, c[:4])
