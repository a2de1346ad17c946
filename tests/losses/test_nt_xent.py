import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import NTXent
from keras_transfer.losses import nt_xent
from keras_transfer.losses.nt_xent import nt_xent_terms
from tests.test_case import TestCase


def numpy_nt_xent(z1, z2, temperature):
    """Written from Chen et al. (2020), Algorithm 1: z_{2k-1}, z_{2k} are a pair;
    l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t);
    L = 1 / (2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]."""
    z1 = np.asarray(z1, dtype="float64")
    z2 = np.asarray(z2, dtype="float64")
    n = len(z1)
    z = np.empty((2 * n, z1.shape[1]))
    z[0::2], z[1::2] = z1, z2  # interleaved as in the paper
    s = np.array([[a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in z] for a in z])

    def loss_of(i, j):
        denominator = sum(np.exp(s[i, k] / temperature) for k in range(2 * n) if k != i)
        return -np.log(np.exp(s[i, j] / temperature) / denominator)

    return sum(loss_of(2 * k, 2 * k + 1) + loss_of(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


class NTXentTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.z1 = rng.normal(size=(6, 5)).astype("float32")
        self.z2 = (self.z1 + 0.5 * rng.normal(size=(6, 5))).astype("float32")

    def test_matches_paper_formula(self):
        for temperature in (0.05, 0.1, 0.5, 1.0):
            expected = numpy_nt_xent(self.z1, self.z2, temperature)
            self.assertAllClose(nt_xent(self.z1, self.z2, temperature), expected, atol=1e-5, rtol=1e-5)

    def test_scale_invariant_and_symmetric(self):
        # Cosine similarity: rescaling rows does not change the loss; swapping views neither.
        expected = numpy_nt_xent(self.z1, self.z2, 0.2)
        self.assertAllClose(nt_xent(3.0 * self.z1, 0.1 * self.z2, 0.2), expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(nt_xent(self.z2, self.z1, 0.2), expected, atol=1e-5, rtol=1e-5)

    def test_perfect_pairs_lower_bound(self):
        # Two orthogonal pairs, each pair identical: l = -log(e^{1/t} / (e^{1/t} + 2))
        z = np.eye(2, dtype="float32")
        t = 0.5
        expected = -np.log(np.exp(1 / t) / (np.exp(1 / t) + 2.0))
        self.assertAllClose(nt_xent(z, z, t), expected, atol=1e-6, rtol=1e-6)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(lambda a, b: nt_xent(a, b, 0.3), [self.z1[:4], self.z2[:4]])

    def test_float16_inputs_float32_result(self):
        z1 = self.z1.astype("float16")
        z2 = self.z2.astype("float16")
        value = nt_xent(z1, z2, 0.05)
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, numpy_nt_xent(z1, z2, 0.05), atol=1e-3, rtol=1e-3)
        # A tiny temperature in float16 would overflow exp(); float32 inside stays finite.
        self.assertTrue(np.isfinite(float(nt_xent(z1, z2, 0.01))))

    def test_zero_embedding_is_finite(self):
        z1 = self.z1.copy()
        z1[0] = 0.0
        with tf.GradientTape() as tape:
            v = tf.Variable(z1)
            loss = nt_xent(v, self.z2, 0.1)
        self.assertTrue(np.isfinite(float(loss)))
        self.assertTrue(np.all(np.isfinite(tape.gradient(loss, v).numpy())))

    def test_contrastive_hits(self):
        _, hits = nt_xent_terms(self.z1, self.z1 * 2.0, 0.1)
        self.assertAllClose(hits, np.ones(12))

    def test_loss_class(self):
        loss = NTXent(temperature=0.2)
        y_pred = np.stack([self.z1, self.z2], axis=1)
        self.assertAllClose(loss(np.zeros(6), y_pred), numpy_nt_xent(self.z1, self.z2, 0.2), atol=1e-5, rtol=1e-5)
        # Sample weights weight pairs: weight 1 on the first 3 pairs, 0 elsewhere.
        per_pair = NTXent(0.2, reduction=None)(np.zeros(6), y_pred)
        self.assertEqual(tuple(per_pair.shape), (6,))
        self.assertAllClose(np.mean(per_pair), numpy_nt_xent(self.z1, self.z2, 0.2), atol=1e-5)
        config = loss.get_config()
        self.assertEqual(NTXent.from_config(config).get_config(), config)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        self.assertIsInstance(restored, NTXent)
        self.assertEqual(restored.temperature, 0.2)

    def test_loss_class_in_compiled_model(self):
        # A model emitting (batch, 2, dim) trains with compile(loss=NTXent()) and round-trips.
        inputs = keras.Input((2, 4))
        outputs = keras.layers.Dense(3)(inputs)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="sgd", loss=NTXent(0.5))
        x = np.random.default_rng(1).normal(size=(8, 2, 4)).astype("float32")
        self.run_fit_test(model, x, np.zeros(8), batch_size=8)
        path = os.path.join(self.get_temp_dir(), "m.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertIsInstance(reloaded.loss, NTXent)

    def test_bad_arguments(self):
        for t in (0, -0.1, float("nan"), "0.1"):
            self.assertRaisesValueError(
                ["`temperature` must be a positive", f"temperature={t!r}"], nt_xent, self.z1, self.z2, t
            )
            self.assertRaisesValueError("`temperature` must be a positive", NTXent, t)
        self.assertRaisesValueError(
            ["at least 2 pairs", "batch size 1", "drop_remainder"], nt_xent, self.z1[:1], self.z2[:1]
        )
        self.assertRaisesValueError(["must be 2-D", "(6, 5, 1)"], nt_xent, self.z1[..., None], self.z2[..., None])
        self.assertRaisesValueError(["same shape", "(6, 5)", "(5, 5)"], nt_xent, self.z1, self.z2[:5])
        self.assertRaisesValueError(["(batch, 2, dim)", "(6, 5)"], NTXent(), np.zeros(6), self.z1)

    def test_nan_is_a_clear_error(self):
        z1 = self.z1.copy()
        z1[2, 1] = np.nan
        self.assertRaisesValueError(["`z1` must contain only finite", "NaN"], nt_xent, z1, self.z2)
        self.assertRaisesValueError("`z2` must contain only finite", nt_xent, self.z2, z1 * np.inf)

    def test_batch_of_one_in_graph_is_a_clear_error(self):
        fn = tf.function(lambda a, b: nt_xent(a, b), input_signature=[tf.TensorSpec((None, 5))] * 2)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "fewer than 2 pairs"):
            fn(self.z1[:1], self.z2[:1])
        self.assertAllClose(fn(self.z1, self.z2), numpy_nt_xent(self.z1, self.z2, 0.1), atol=1e-5, rtol=1e-5)
