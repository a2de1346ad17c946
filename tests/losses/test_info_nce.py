import doctest
import importlib
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.losses import InfoNCE
from keras_transfer.losses import info_nce
from keras_transfer.losses.info_nce import info_nce_terms
from tests.test_case import TestCase


def numpy_info_nce(query, positive_key, negative_keys, temperature, normalize=True):
    """Written from Oord et al. (2018), eq. 4, with He et al. (2020)'s similarity q.k / t:
    l_i = -log exp(s(q_i, k+_i)) / (exp(s(q_i, k+_i)) + sum_j exp(s(q_i, k_ij))).
    Negatives are (K, d) shared or (N, K, d) per query. Returns (mean loss, hits)."""
    q = np.asarray(query, "float64")
    k = np.asarray(positive_key, "float64")
    neg = np.asarray(negative_keys, "float64")

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True) if normalize else v

    q, k, neg = unit(q), unit(k), unit(neg)
    losses, hits = [], []
    for i in range(len(q)):
        negatives = neg if neg.ndim == 2 else neg[i]
        positive = np.exp(q[i] @ k[i] / temperature)
        scores = [np.exp(q[i] @ n / temperature) for n in negatives]
        losses.append(-np.log(positive / (positive + sum(scores))))
        hits.append(float(positive > max(scores)))
    return np.mean(losses), np.asarray(hits)


class InfoNCETest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.q = rng.normal(size=(5, 4))
        self.k = self.q + 0.5 * rng.normal(size=(5, 4))
        self.queue = rng.normal(size=(7, 4))
        self.per_query = rng.normal(size=(5, 3, 4))

    def test_matches_numpy_reference_float64(self):
        for temperature in (0.07, 0.2, 1.0):
            for negatives in (self.queue, self.per_query):
                for normalize in (True, False):
                    expected, hits = numpy_info_nce(self.q, self.k, negatives, temperature, normalize)
                    value = info_nce(self.q, self.k, negatives, temperature, normalize=normalize)
                    self.assertEqual(value.dtype, tf.float64)
                    self.assertAllClose(value, expected, atol=1e-12, rtol=1e-12)
                    _, got_hits = info_nce_terms(self.q, self.k, negatives, temperature, normalize)
                    self.assertAllClose(got_hits, hits, atol=0)

    def test_float32_and_float16_inputs(self):
        expected, _ = numpy_info_nce(self.q, self.k, self.queue, 0.2)
        value = info_nce(self.q.astype("float32"), self.k.astype("float32"), self.queue.astype("float32"), 0.2)
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, expected, atol=1e-5, rtol=1e-5)
        half = [v.astype("float16") for v in (self.q, self.k, self.queue)]
        value = info_nce(*half, temperature=0.2)
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(value, numpy_info_nce(*half, 0.2)[0], atol=1e-3, rtol=1e-3)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(lambda q, k, n: info_nce(q, k, n, 0.3), [self.q, self.k, self.queue])
        self.run_gradient_check(lambda q, k, n: info_nce(q, k, n, 0.5), [self.q, self.k, self.per_query])

    def test_scale_invariant_when_normalized(self):
        expected = info_nce(self.q, self.k, self.queue, 0.2)
        self.assertAllClose(info_nce(3.0 * self.q, 0.1 * self.k, 2.0 * self.queue, 0.2), expected, atol=1e-12)

    def test_docstring_example(self):
        # `keras_transfer.losses.info_nce` the attribute is the function; the module is:
        module = importlib.import_module("keras_transfer.losses.info_nce")
        result = doctest.testmod(module, verbose=False)
        self.assertEqual(result.failed, 0)
        self.assertGreater(result.attempted, 0)

    def test_loss_class(self):
        negatives = self.per_query
        y_pred = np.concatenate([self.q[:, None], self.k[:, None], negatives], axis=1).astype("float32")
        loss = InfoNCE(temperature=0.2)
        expected, _ = numpy_info_nce(self.q, self.k, negatives, 0.2)
        self.assertAllClose(loss(np.zeros(5), y_pred), expected, atol=1e-5, rtol=1e-5)
        per_query = InfoNCE(0.2, reduction=None)(np.zeros(5), y_pred)
        self.assertEqual(tuple(per_query.shape), (5,))
        weighted = loss(np.zeros(5), y_pred, sample_weight=np.array([1.0, 0, 0, 0, 0]))
        self.assertAllClose(weighted, per_query[0] / 5.0, atol=1e-6)
        config = loss.get_config()
        self.assertEqual(InfoNCE.from_config(config).get_config(), config)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        self.assertIsInstance(restored, InfoNCE)
        self.assertEqual((restored.temperature, restored.normalize), (0.2, True))

    def test_loss_class_in_compiled_model(self):
        inputs = keras.Input((4, 3))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(optimizer="sgd", loss=InfoNCE(0.5))
        x = np.random.default_rng(1).normal(size=(8, 4, 3)).astype("float32")
        self.run_fit_test(model, x, np.zeros(8), batch_size=8)
        path = os.path.join(self.get_temp_dir(), "m.keras")
        model.save(path)
        self.assertIsInstance(keras.saving.load_model(path).loss, InfoNCE)

    def test_bad_arguments(self):
        for t in (0, -0.1, float("nan"), "0.1"):
            self.assertRaisesValueError(
                ["`temperature` must be a positive", f"temperature={t!r}"], info_nce, self.q, self.k, self.queue, t
            )
            self.assertRaisesValueError("`temperature` must be a positive", InfoNCE, t)
        self.assertRaisesValueError(
            ["`query` and `positive_key` must be 2-D", "(5, 4, 1)"],
            info_nce,
            self.q[..., None],
            self.k[..., None],
            self.queue,
        )
        self.assertRaisesValueError(["same shape", "(5, 4)", "(4, 4)"], info_nce, self.q, self.k[:4], self.queue)
        self.assertRaisesValueError(["`negative_keys` must be", "(7, 3)"], info_nce, self.q, self.k, self.queue[:, :3])
        self.assertRaisesValueError(["`negative_keys` must be", "(7,)"], info_nce, self.q, self.k, self.queue[:, 0])
        self.assertRaisesValueError(
            ["(batch, 2 + num_negatives, dim)", "(5, 2, 4)"], InfoNCE(), np.zeros(5), np.stack([self.q, self.k], axis=1)
        )
