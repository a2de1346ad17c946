import gc
import json
import os
import subprocess
import sys
import warnings
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.exceptions import ConvergenceWarning

from keras_transfer.datasets import load_digits
from keras_transfer.datasets import make_dataset
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import extract_features
from keras_transfer.recipes import fit_logistic_regression
from keras_transfer.recipes import freeze_backbone
from keras_transfer.recipes import get_head
from keras_transfer.recipes import linear_probe
from keras_transfer.recipes.fine_tune import evaluate_accuracy
from keras_transfer.recipes.linear_probe import CANDIDATE_C
from keras_transfer.recipes.linear_probe import predict_in_batches
from tests.recipes.logistic_optimality import assert_head_at_optimum
from tests.test_case import TestCase


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class FitLogisticRegressionTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.features = (rng.normal(size=(120, 6)) * [1, 10, 0.1, 5, 1, 2] + [0, 3, -1, 0, 50, 0]).astype("float32")
        w = rng.normal(size=(6, 3))
        cls.y = np.argmax(
            (cls.features - cls.features.mean(0)) / cls.features.std(0) @ w + rng.normal(size=(120, 3)), axis=1
        )

    # Compared on what L-BFGS guarantees (the gradient at the solution, the objective), not on
    # probabilities from a second solver: those differ beyond its tolerance from release to
    # release (see logistic_optimality).
    def test_multiclass_matches_sklearn(self):
        kernel, bias, C = fit_logistic_regression(self.features, self.y, 3, C=0.5)
        self.assertEqual(C, 0.5)
        self.assertEqual(kernel.shape, (6, 3))
        assert_head_at_optimum(self, self.features, self.y, kernel, bias, C=0.5)

    def test_binary_matches_sklearn(self):
        y = (self.y == 1).astype("int64")
        kernel, bias, _ = fit_logistic_regression(self.features, y, 2, C=1.0)
        self.assertAllClose(kernel[:, 0], np.zeros(6), atol=0)  # sigmoid(t) installed as softmax([0, t])
        self.assertEqual(bias[0], 0)
        assert_head_at_optimum(self, self.features, y, kernel, bias, C=1.0)

    def test_optimality_check_rejects_a_head_off_the_optimum(self):
        # The check can fail: the optimum of another C, or a solver stopped early, is refused.
        kernel, bias, _ = fit_logistic_regression(self.features, self.y, 3, C=0.4)
        with self.assertRaises(AssertionError):
            assert_head_at_optimum(self, self.features, self.y, kernel, bias, C=0.5)
        with warnings.catch_warnings():  # this early stop is the point: sklearn's warning is expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            kernel, bias, _ = fit_logistic_regression(self.features, self.y, 3, C=0.5, max_iter=5)
        with self.assertRaises(AssertionError):
            assert_head_at_optimum(self, self.features, self.y, kernel, bias, C=0.5)

    def test_constant_feature_and_absent_class(self):
        features = np.concatenate([self.features, np.ones((120, 1), "float32")], axis=1)
        kernel, bias, _ = fit_logistic_regression(features, self.y, 4, C=1.0)
        self.assertTrue(np.all(np.isfinite(kernel)))
        self.assertAllClose(kernel[-1], np.zeros(4), atol=1e-6)  # no weight on a constant feature
        self.assertAllClose(kernel[:, 3], np.zeros(7), atol=0)  # class 3 never seen: logit 0
        self.assertEqual(bias[3], 0)

    def test_auto_C_is_from_grid(self):
        _, _, C = fit_logistic_regression(self.features, self.y, 3, C="auto")
        self.assertIn(C, CANDIDATE_C)
        # One example of some class: no cross-validation possible, C falls back to 1.
        y = self.y.copy()
        y[0] = 3
        _, _, C = fit_logistic_regression(self.features, y, 4, C="auto")
        self.assertEqual(C, 1.0)

    def test_bad_C(self):
        self.assertRaisesValueError(["`C`", "C=-1"], fit_logistic_regression, self.features, self.y, 3, C=-1)


class LinearProbeTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        (x_train, y_train), (x_test, y_test) = load_digits(image_size=16, channels=1, seed=0)
        cls.x_train, cls.y_train = x_train[:400], y_train[:400]
        cls.x_test, cls.y_test = x_test[:200], y_test[:200]
        cls.model = build_classifier("simple_cnn", 10, (16, 16, 1), dropout=0)
        cls.initial_weights = cls.model.get_weights()

    def setUp(self):
        super().setUp()
        self.model.set_weights(self.initial_weights)

    def test_installed_head_reproduces_sklearn(self):
        result = linear_probe(self.model, self.x_train, self.y_train, C=1.0)
        self.assertEqual(result["C"], 1.0)
        self.assertEqual(result["num_features"], 64)
        self.assertGreater(result["seconds"], 0)
        head = get_head(self.model)
        kernel, bias = head.kernel.numpy(), head.bias.numpy()
        # The installed head solves scikit-learn's problem on the extracted features...
        assert_head_at_optimum(self, extract_features(self.model, self.x_train), self.y_train, kernel, bias, C=1.0)
        # ...and the model predicts with it: softmax(features @ kernel + bias), float32 vs float64.
        features = extract_features(self.model, self.x_test).astype("float64")
        expected = _softmax(features @ kernel + bias)
        self.assertAllClose(self.model.predict(self.x_test, verbose=0), expected, atol=1e-5, rtol=0)
        self.assertAllClose(
            result["train_accuracy"], evaluate_accuracy(self.model, self.x_train, self.y_train), atol=1e-6
        )

    @pytest.mark.compiled
    def test_probe_matches_fit_with_frozen_backbone(self):
        linear_probe(self.model, (self.x_train, self.y_train))
        probe_acc = evaluate_accuracy(self.model, self.x_test, self.y_test)
        # Same frozen features, the head trained by SGD through the network instead.
        self.model.set_weights(self.initial_weights)
        freeze_backbone(self.model)
        # The raw pooled features are tiny (std ~0.04): SGD needs a large rate to get anywhere in 160 steps.
        self.model.compile(keras.optimizers.Adam(0.2), "sparse_categorical_crossentropy")
        self.model.fit(self.x_train, self.y_train, batch_size=100, epochs=40, verbose=0)
        fit_acc = evaluate_accuracy(self.model, self.x_test, self.y_test)
        # Measured: probe 0.955, fit 0.84 (the fit has not converged; the convex solution has).
        self.assertGreater(fit_acc, 0.6)  # the peer really learned, so the comparison means something
        self.assertGreater(probe_acc, 0.85)
        self.assertGreaterEqual(probe_acc, fit_acc - 0.03, f"probe {probe_acc} vs fit {fit_acc}")

    def test_dataset_input_and_backbone_untouched(self):
        backbone_before = [w.copy() for w in self.model.get_layer("backbone").get_weights()]
        result = linear_probe(self.model, make_dataset(self.x_train, self.y_train, batch_size=100), C=1.0)
        self.assertGreater(result["train_accuracy"], 0.5)
        for a, b in zip(backbone_before, self.model.get_layer("backbone").get_weights()):
            np.testing.assert_array_equal(a, b)
        head = get_head(self.model)
        self.assertNotAllClose(head.kernel.numpy(), self.initial_weights[-2])

    def test_dataset_streams_like_arrays(self):
        # A dataset is read once, batch by batch (no copy of the split): the same features, and
        # the head it installs is the optimum for the array features too.
        x, y = self.x_train[:150], self.y_train[:150]
        expected = extract_features(self.model, x, use_cache=False)
        images_only = tf.data.Dataset.from_tensor_slices(x).batch(32)
        self.assertAllClose(extract_features(self.model, images_only), expected, atol=1e-5)
        self.assertAllClose(extract_features(self.model, make_dataset(x, y, batch_size=7)), expected, atol=1e-5)
        result = linear_probe(self.model, make_dataset(x, y, batch_size=64), C=1.0)
        self.assertEqual(result["num_features"], 64)
        head = get_head(self.model)
        assert_head_at_optimum(self, expected, y, head.kernel.numpy(), head.bias.numpy(), C=1.0)
        # Labels follow their images when the dataset reshuffles on every pass.
        shuffled = make_dataset(x, y, batch_size=64, shuffle=True)
        self.assertAllClose(linear_probe(self.model, shuffled, C=1.0)["train_accuracy"], result["train_accuracy"])

    def test_predict_in_batches_matches_predict(self):
        expected = self.model.predict(self.x_test[:50], verbose=0)
        for batch_size in (1, 7, 64):
            self.assertAllClose(
                predict_in_batches(self.model, self.x_test[:50], batch_size=batch_size), expected, atol=1e-6
            )
        # uint8 images are cast to the model's input dtype batch by batch.
        images = np.round(self.x_test[:10] * 0 + np.arange(10)[:, None, None, None]).astype("uint8")
        self.assertAllClose(
            predict_in_batches(self.model, images), self.model.predict(images.astype("float32"), verbose=0), atol=1e-6
        )
        self.assertRaisesValueError(
            ["`batch_size`", "batch_size=0"], predict_in_batches, self.model, self.x_test, batch_size=0
        )

    def test_compiled_extractors_do_not_keep_models_alive(self):
        refs = []
        for _ in range(3):
            model = build_classifier("simple_cnn", 10, (16, 16, 1), widths=(4, 4, 4))
            extract_features(model, self.x_test[:8], use_cache=False)
            predict_in_batches(model, self.x_test[:8])
            refs.append(weakref.ref(model))
        del model
        gc.collect()
        self.assertEqual([r() for r in refs], [None, None, None])

    def test_new_models_in_a_loop_log_no_retracing(self):
        # `predict` (Keras) shares one tf.function retracing counter across models, so a loop
        # that probes and evaluates new models logged "5 out of the last 5 calls ... triggered
        # tf.function retracing"; each model's compiled function now counts on its own.
        with self.assertNoLogs("tensorflow", level="WARNING"):
            for _ in range(6):
                model = build_classifier("simple_cnn", 10, (16, 16, 1), widths=(4, 4, 4))
                linear_probe(model, self.x_train[:60], self.y_train[:60], C=1.0)
                evaluate_accuracy(model, self.x_test[:20], self.y_test[:20])

    def test_feature_cache(self):
        cache = self.get_temp_dir()
        first = extract_features(self.model, self.x_test[:20], cache_dir=cache)
        files = os.listdir(cache)
        self.assertLen(files, 1)
        self.assertAllClose(np.load(os.path.join(cache, files[0])), first)
        again = extract_features(self.model, self.x_test[:20], cache_dir=cache)
        self.assertAllClose(again, first)
        fresh = extract_features(self.model, self.x_test[:20], use_cache=False)
        self.assertAllClose(fresh, first, atol=1e-5)
        # Changing the weights changes the key: no stale features.
        head_only = self.model.get_layer("backbone").weights[0]
        head_only.assign(head_only.numpy() * 2)
        changed = extract_features(self.model, self.x_test[:20], cache_dir=cache)
        self.assertNotAllClose(changed, first)
        self.assertLen(os.listdir(cache), 2)

    def test_errors(self):
        model, x, y = self.model, self.x_train[:30], self.y_train[:30]
        self.assertRaisesValueError(["`y`", "[0, 10)", ", 10]"], linear_probe, model, x, np.where(y == 0, 10, y))
        self.assertRaisesValueError(["`y`", "[-1, "], linear_probe, model, x, np.where(y == 0, -1, y))
        one_hot = np.eye(10)[y]
        self.assertRaisesValueError(["`y`", "(30, 10)", "one-hot"], linear_probe, model, x, one_hot)
        self.assertRaisesValueError(["integer class ids"], linear_probe, model, x, y + 0.5)
        self.assertRaisesValueError(["`data`", "at least one example"], linear_probe, model, x[:0], y[:0])
        self.assertRaisesValueError(["len(x)=30", "len(y)=29"], linear_probe, model, x, y[:29])
        bad = x.astype("float32")
        bad[0, 0, 0, 0] = np.nan
        self.assertRaisesValueError(["`x`", "NaN"], linear_probe, model, bad, y)
        self.assertRaisesValueError(
            ["`data`", "(x, y) batches"], linear_probe, model, tf.data.Dataset.from_tensor_slices(x).batch(8)
        )
        self.assertRaisesValueError(
            ["`data`", "empty dataset"], linear_probe, model, make_dataset(x, y, batch_size=8).take(0)
        )
        self.assertRaisesValueError(
            ["`x`", "NaN"], linear_probe, model, tf.data.Dataset.from_tensor_slices((bad, y)).batch(8)
        )
        self.assertRaisesValueError(["`x`", "NaN"], extract_features, model, bad)
        inputs = keras.Input((4,))
        plain = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
        self.assertRaisesValueError(["'head'"], linear_probe, plain, np.zeros((4, 4)), np.zeros(4, "int64"))


# Runs in a fresh process: peak RSS (ru_maxrss) only grows, so the probe on 64 images sets a
# baseline and the probes on 256 images (arrays, then fine_tune on a dataset) may add only a little to it.
_MEMORY_CHILD = r"""
import json, os, resource
import numpy as np
from keras_transfer.datasets import make_dataset
from keras_transfer.recipes import build_classifier, fine_tune, linear_probe

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

n, size = 64, 64
model = build_classifier("mobilenet_v2", 4, (size, size, 3), weights=None, dropout=0)
x = np.random.default_rng(0).uniform(0, 255, size=(4 * n, size, size, 3)).astype("float32")
y = np.arange(4 * n) % 4
linear_probe(model, x[:n], y[:n], C=1.0)
small = peak_mib()
features = linear_probe(model, x, y, C=1.0)["num_features"]
large = peak_mib()
fine_tune(model, make_dataset(x, y, batch_size=64), probe="convex", epochs=0, verbose=0)  # the CLI's path
dataset = peak_mib()
print(json.dumps({"small": small, "large": large, "dataset": dataset, "features": features}))
"""


class FeatureExtractionMemoryTest(TestCase):
    def test_peak_memory_flat_in_the_number_of_images(self):
        # mobilenet_v2 at 64 px, default batch (64): the eager extraction this replaced grew
        # ~7 MiB per image (measured: +1,397 MiB from 64 to 256 images; at 224 px ~87 MiB per
        # image); compiled batches measured +22 MiB, the 256 x 1280 features included.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(
            os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3"
        )
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_CHILD], capture_output=True, text=True, env=env, cwd=root, timeout=300
        )
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        peaks = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(peaks["features"], 1280)
        self.assertLess(peaks["large"] - peaks["small"], 150, peaks)  # 4x the images, ~ the same peak
        self.assertLess(peaks["dataset"] - peaks["small"], 150, peaks)
