"""Domain-adaptation models (SourceOnly, DANN, DeepCORAL) under divergence, NaN and low precision.

- A divergent run (a huge learning rate) or NaN inputs is stopped by `TerminateOnNaN`.
- No metric is finite while the weights are NaN: not the losses, and not the
  accuracies either (an argmax of NaN scores reads as a plausible 0.25).
- `mixed_float16` and `mixed_bfloat16`: a training step has finite metrics, and the
  outputs (`predict`, `DANN.domain_logits`) are float32.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import domain_pairs
from keras_transfer.models import DANN
from keras_transfer.models import DeepCORAL
from keras_transfer.models import SourceOnly
from keras_transfer.models.source_only import nan_unless_finite
from tests.test_case import TestCase

MODELS = {"SourceOnly": SourceOnly, "DANN": DANN, "DeepCORAL": DeepCORAL}
# Four units in the last place at magnitude 1 (float16 has 10 mantissa bits, bfloat16 7).
HALF_PRECISION_ATOL = {"mixed_float16": 4 * 2.0**-10, "mixed_bfloat16": 4 * 2.0**-7}


def _weights_finite(model):
    return all(np.all(np.isfinite(v.numpy())) for v in model.weights)


class _Watch(keras.callbacks.Callback):
    """Per batch: whether the weights were finite when it began, and the logs it ended with."""

    def __init__(self):
        super().__init__()
        self.finite_before, self.logs = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.finite_before.append(_weights_finite(self.model))

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({k: float(v) for k, v in logs.items()})


class DANNFaultsTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.xs = rng.normal(size=(16, 4)).astype("float32")
        cls.ys = rng.integers(0, 3, size=16).astype("int64")
        cls.xt = (rng.normal(size=(16, 4)) + 1.0).astype("float32")

    def build(self, cls, learning_rate=0.1):
        keras.utils.set_random_seed(0)
        fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu")])
        lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        model = cls(fe, lc)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
        return model

    def data(self, xs=None):
        xs = self.xs if xs is None else xs
        return tf.data.Dataset.from_tensor_slices(((xs, self.xt), self.ys)).batch(4)

    def assertNoFiniteMetricWithNaNWeights(self, watch, name):
        for finite, logs in zip(watch.finite_before, watch.logs):
            if not finite:
                for key, value in logs.items():
                    self.assertFalse(np.isfinite(value), f"{name} logs {key}={value} with NaN weights")

    def test_divergence_is_stopped_by_terminate_on_nan(self):
        for name, cls in MODELS.items():
            with self.subTest(model=name):
                model = self.build(cls, learning_rate=1e12)
                watch = _Watch()
                history = model.fit(
                    self.data(), epochs=5, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), watch]
                )
                self.assertLess(len(watch.logs), 5 * 4, f"{name} trained on after diverging")
                self.assertFalse(np.isfinite(watch.logs[-1]["loss"]))
                self.assertFalse(np.isfinite(history.history["loss"][-1]))
                self.assertFalse(_weights_finite(model))
                self.assertNoFiniteMetricWithNaNWeights(watch, name)

    def test_nan_inputs_stop_training_at_the_first_batch(self):
        xs = self.xs.copy()
        xs[0, 0] = np.nan
        for name, cls in MODELS.items():
            with self.subTest(model=name):
                model = self.build(cls)
                watch = _Watch()
                model.fit(self.data(xs), epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), watch])
                self.assertLen(watch.logs, 1)
                self.assertFalse(np.isfinite(watch.logs[0]["loss"]))
        # `domain_pairs` refuses such data before training, naming the array.
        self.assertRaisesValueError(["source_x"], domain_pairs, xs, self.ys, self.xt)

    def test_nan_inputs_give_nan_logs_even_when_the_network_hides_them(self):
        # Some kernels map NaN to a number (oneDNN's fused MatMul+ReLU on some CPUs): here a
        # layer does so on every machine, and the logs must still be NaN from the first batch.
        xs = self.xs.copy()
        xs[0, 0] = np.nan
        hide = keras.layers.Lambda(lambda t: keras.ops.where(keras.ops.isfinite(t), t, 0.0))
        for name, cls in MODELS.items():
            with self.subTest(model=name):
                keras.utils.set_random_seed(0)
                fe = keras.Sequential([keras.Input((4,)), hide, keras.layers.Dense(6, activation="relu")])
                lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
                model = cls(fe, lc)
                model.compile(optimizer=keras.optimizers.SGD(0.1))
                self.assertTrue(np.all(np.isfinite(model.predict(xs, verbose=0))))  # the outputs hide the NaN
                watch = _Watch()
                model.fit(self.data(xs), epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), watch])
                self.assertLen(watch.logs, 1)
                self.assertTrue(all(np.isnan(v) for v in watch.logs[0].values()), watch.logs[0])

    def test_no_finite_metric_while_weights_are_nan(self):
        xs = self.xs.copy()
        xs[0, 0] = np.nan
        for name, cls in MODELS.items():
            with self.subTest(model=name):
                model = self.build(cls)
                model.fit(self.data(xs), epochs=1, steps_per_epoch=1, verbose=0)
                self.assertFalse(_weights_finite(model))
                watch = _Watch()
                history = model.fit(self.data(), epochs=2, verbose=0, callbacks=[watch])
                self.assertTrue(watch.logs and not any(watch.finite_before))
                self.assertNoFiniteMetricWithNaNWeights(watch, name)
                for key, values in history.history.items():
                    self.assertFalse(np.any(np.isfinite(values)), f"{name} logs {key}={values}")
                result = model.evaluate(self.data(), verbose=0, return_dict=True)
                for key, value in result.items():
                    self.assertFalse(np.isfinite(value), f"{name} evaluates {key}={value}")

    def test_correctness_is_nan_only_for_examples_with_non_finite_scores(self):
        scores = np.array([[1.0, 0.0], [np.nan, 2.0], [0.0, np.inf], [3.0, 1.0]], "float32")
        correct = np.array([1.0, 1.0, 0.0, 0.0], "float32")
        expected = np.where(np.isfinite(scores).all(axis=-1), correct, np.nan)
        self.assertAllClose(nan_unless_finite(correct, scores), expected)
        # One logit per example (binary heads, the domain logit): same rule.
        self.assertAllClose(nan_unless_finite(correct, scores[:, 0]), [1.0, np.nan, 0.0, 0.0])

    def test_mixed_precision_step_is_finite_with_float32_outputs(self):
        for policy in ("mixed_float16", "mixed_bfloat16"):
            for name, cls in MODELS.items():
                with self.subTest(model=name, policy=policy):
                    keras.config.set_dtype_policy(policy)
                    try:
                        model = self.build(cls)
                        history = model.fit(self.data(), epochs=1, steps_per_epoch=2, verbose=0)
                        outputs = model.predict(self.xs, verbose=0)
                        domain = model.domain_logits(self.xt) if name == "DANN" else None
                    finally:
                        keras.config.set_dtype_policy("float32")
                    compute = model.label_classifier.layers[-1].compute_dtype
                    self.assertEqual(compute, policy.split("_")[1])  # the step ran in low precision
                    for key, values in history.history.items():
                        self.assertTrue(np.all(np.isfinite(values)), f"{name} {policy}: {key}={values}")
                    self.assertEqual(outputs.dtype, np.float32)
                    fe, lc = model.feature_extractor, model.label_classifier
                    reference = keras.ops.convert_to_numpy(lc(fe(self.xs))).astype("float32")
                    # predict's traced graph may fuse ops (oneDNN) and round differently from the
                    # eager reference: agreement to a few units in the last place of the half format.
                    self.assertAllClose(outputs, reference, atol=HALF_PRECISION_ATOL[policy])
                    if domain is not None:
                        self.assertEqual(keras.ops.convert_to_numpy(domain).dtype, np.float32)
