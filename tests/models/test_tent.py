import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import TENT
from tests.test_case import TestCase


def classifier(seed=0, norm="batch", softmax=False):
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    norm_layer = layers.BatchNormalization(name="bn") if norm == "batch" else layers.LayerNormalization(name="ln")
    return keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(6, name="dense_in"),
            norm_layer,
            layers.ReLU(),
            layers.Dropout(0.5),
            layers.Dense(3, activation="softmax" if softmax else None, name="dense_out"),
        ],
        name="classifier",
    )


def numpy_forward(model, x, gamma=None, beta=None):
    """Logits of `classifier()` with BatchNorm on the batch's own moments (float64)."""
    w1, b1 = (v.numpy().astype("float64") for v in model.get_layer("dense_in").weights)
    bn = model.get_layer("bn")
    gamma = bn.gamma.numpy().astype("float64") if gamma is None else gamma
    beta = bn.beta.numpy().astype("float64") if beta is None else beta
    w2, b2 = (v.numpy().astype("float64") for v in model.get_layer("dense_out").weights)
    h = np.asarray(x, "float64") @ w1 + b1
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + bn.epsilon) * gamma + beta
    return np.maximum(h, 0.0) @ w2 + b2


def numpy_mean_entropy(logits):
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.mean(-(np.exp(log_p) * log_p).sum(-1)))


class TENTTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.x = (rng.normal(size=(64, 4)) * 2 + 1).astype("float32")

    def test_only_affine_parameters_train_and_the_user_model_is_untouched(self):
        source = classifier()
        before = [w.copy() for w in source.get_weights()]
        model = TENT(source)
        self.assertEqual([v.path for v in model.trainable_weights], ["bn/gamma", "bn/beta"])
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        frozen = [v for v in model.classifier.weights if v.name not in ("gamma", "beta")]
        start = {v.path: v.numpy().copy() for v in model.classifier.weights}
        self.run_fit_test(model, self.x, batch_size=32, steps=2, frozen=frozen)
        for v in model.classifier.weights:
            changed = not np.array_equal(v.numpy(), start[v.path])
            self.assertEqual(changed, v.name in ("gamma", "beta"), v.path)
        for w, b in zip(source.get_weights(), before):
            np.testing.assert_array_equal(w, b)  # the model passed in is not modified
        self.assertIsNot(model.classifier, source)

    def test_predictions_use_batch_statistics(self):
        model = TENT(classifier())
        expected = numpy_forward(model.classifier, self.x[:16])
        self.assertAllClose(model.predict(self.x[:16], batch_size=16, verbose=0), expected, atol=1e-5, rtol=1e-5)
        # Dropout is off and the moving statistics are not used (nor changed).
        self.assertAllClose(model(self.x[:16], training=True), expected, atol=1e-5, rtol=1e-5)
        bn = model.classifier.get_layer("bn")
        self.assertAllClose(bn.moving_mean, np.zeros(6))

    def test_entropy_gradient_matches_finite_differences(self):
        model = TENT(classifier())
        bn = model.classifier.get_layer("bn")
        bn.gamma.assign(np.linspace(0.5, 1.5, 6))
        bn.beta.assign(np.linspace(-0.3, 0.3, 6))
        x = self.x[:16]
        with tf.GradientTape() as tape:
            loss = model._entropy(x)
        grads = tape.gradient(loss, [bn.gamma, bn.beta])
        gamma, beta = bn.gamma.numpy().astype("float64"), bn.beta.numpy().astype("float64")
        self.assertAllClose(loss, numpy_mean_entropy(numpy_forward(model.classifier, x)), rtol=1e-5)
        eps = 1e-5
        for index, (value, grad) in enumerate(zip((gamma, beta), grads)):
            numeric = np.zeros_like(value)
            for j in range(value.size):
                args = [[gamma, beta], [gamma, beta]]
                plus, minus = value.copy(), value.copy()
                plus[j] += eps
                minus[j] -= eps
                args[0][index], args[1][index] = plus, minus
                up = numpy_mean_entropy(numpy_forward(model.classifier, x, *args[0]))
                down = numpy_mean_entropy(numpy_forward(model.classifier, x, *args[1]))
                numeric[j] = (up - down) / (2 * eps)
            self.assertAllClose(grad, numeric, atol=1e-5, rtol=1e-3)

    def test_fit_lowers_the_entropy_and_reset_restores_everything(self):
        model = TENT(classifier())
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        start = [v.numpy().copy() for v in model.weights]
        before = model.evaluate(self.x, batch_size=64, verbose=0)
        history = model.fit(self.x, batch_size=64, epochs=5, shuffle=False, verbose=0).history
        self.assertEqual(sorted(history), ["loss"])
        self.assertAllClose(history["loss"][0], before, rtol=1e-5)  # the first step sees the start
        after = model.evaluate(self.x, batch_size=64, verbose=0)
        self.assertLess(after, before - 0.02)
        self.assertGreater(int(model.optimizer.iterations), 0)
        model.reset()
        for v, s in zip(model.weights, start):
            np.testing.assert_array_equal(v.numpy(), s, err_msg=v.path)
        self.assertEqual(int(model.optimizer.iterations), 0)
        self.assertTrue(
            all(
                not np.any(v.numpy())
                for v in model.optimizer.variables
                if "iteration" not in v.path and "learning_rate" not in v.path
            )
        )
        # After a reset, the run repeats exactly (episodic TENT).
        again = model.fit(self.x, batch_size=64, epochs=5, shuffle=False, verbose=0).history
        self.assertAllClose(again["loss"], history["loss"], atol=0, rtol=0)

    def test_online_protocol(self):
        model = TENT(classifier())
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        outputs = model.adapt_and_predict(self.x, batch_size=16)
        self.assertEqual(outputs.shape, (64, 3))
        self.assertEqual(int(model.optimizer.iterations), 4)
        # Reference: step on a batch, then predict it with the updated parameters (NumPy forward).
        reference = TENT(classifier())
        reference.compile(optimizer=keras.optimizers.SGD(0.5))
        for start in range(0, 64, 16):
            batch = self.x[start : start + 16]
            reference.train_on_batch(batch)
            expected = numpy_forward(reference.classifier, batch)
            self.assertAllClose(outputs[start : start + 16], expected, atol=1e-5, rtol=1e-5)
        model.reset()
        self.assertAllClose(model.adapt_and_predict(self.x, batch_size=16), outputs, atol=0, rtol=0)
        dataset = tf.data.Dataset.from_tensor_slices(self.x).batch(16)
        model.reset()
        self.assertAllClose(model.adapt_and_predict(dataset), outputs, atol=0, rtol=0)

    def test_probabilities_and_layer_normalization(self):
        model = TENT(classifier(softmax=True), from_logits=False)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        self.run_fit_test(model, self.x, batch_size=32)
        model = TENT(classifier(norm="layer"), norm_layers="all")
        self.assertEqual([v.path for v in model.trainable_weights], ["ln/gamma", "ln/beta"])
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        self.run_fit_test(model, self.x, batch_size=1)  # no BatchNorm: one example is fine

    def test_nested_functional_classifier(self):
        inner = classifier()
        inputs = keras.Input((4,))
        outer = keras.Model(inputs, inner(inputs))
        model = TENT(outer)
        self.assertEqual(len(model.trainable_weights), 2)
        self.assertAllClose(model.predict(self.x[:16], verbose=0), numpy_forward(inner, self.x[:16]), atol=1e-5)

    def test_keras_round_trip_and_reset_after_reload(self):
        model = TENT(classifier())
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        initial = [v.numpy().copy() for v in model.trainable_weights]
        model.fit(self.x, batch_size=32, epochs=2, verbose=0)
        reloaded = self.run_serialization_test(model, self.x[:32])
        self.assertNotAllClose(reloaded.trainable_weights[0], initial[0])  # the adapted gamma survives
        self.assertEqual(int(reloaded.optimizer.iterations), 4)
        reloaded.reset()
        for v, s in zip(reloaded.trainable_weights, initial):
            np.testing.assert_array_equal(v.numpy(), s)
        self.assertEqual(int(reloaded.optimizer.iterations), 0)
        reloaded.fit(self.x, batch_size=32, epochs=1, verbose=0)

    def test_export_matches_predict(self):
        def build_and_compile():
            model = TENT(classifier())
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            return model

        self.run_fit_then_export_test(build_and_compile, self.x, self.x[:32], batch_size=32)

    def test_mixed_precision(self):
        def build_and_compile():
            model = TENT(classifier())
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            return model

        model, history = self.run_mixed_precision_test(build_and_compile, self.x, batch_size=32)
        self.assertEqual(model.classifier.get_layer("bn").compute_dtype, "float16")
        self.assertEqual(model.predict(self.x[:8], verbose=0).dtype, np.float32)

    def test_errors(self):
        no_norm = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="plain")
        self.assertRaisesValueError(
            ["TENT needs", "Received: model 'plain' with no BatchNormalization", "Add BatchNormalization"],
            TENT,
            no_norm,
        )
        self.assertRaisesValueError(["norm_layers='all'"], TENT, classifier(norm="layer"))
        self.assertRaisesValueError(
            ["`norm_layers` must be one of ['batch', 'all']", "Received: norm_layers='layer'"],
            TENT,
            classifier(),
            norm_layers="layer",
        )
        self.assertRaisesValueError(["Received: from_logits='no'"], TENT, classifier(), from_logits="no")
        self.assertRaisesValueError(["Functional or Sequential", "keras.Sequential(["], TENT, keras.layers.Dense(3))
        self.assertRaisesValueError(["must be built"], TENT, keras.Sequential([keras.layers.Dense(3)]))
        model = TENT(classifier())
        model.compile(optimizer="sgd")
        self.assertRaisesValueError(
            ["`batch_size` must give BatchNormalization batches of at least 2", "Received: batch_size=1"],
            model.fit,
            self.x,
            batch_size=1,
        )
        self.assertRaisesValueError(
            ["Received: batch_size=16 for 65 examples"], model.fit, self.x[:1].repeat(65, 0), batch_size=16
        )
        self.assertRaisesValueError(["batch_size=None"], model.predict, self.x[:1])
        self.assertRaisesValueError(["batch_size=1"], model.adapt_and_predict, self.x, batch_size=1)
        labels = np.zeros(64, "int64")
        self.assertRaisesValueError(["`y` must be None", "Received: y of type ndarray"], model.fit, self.x, labels)
        dataset = tf.data.Dataset.from_tensor_slices((self.x, labels)).batch(32)
        self.assertRaisesValueError(["`y` must be None", "labelled batches"], model.fit, dataset, verbose=0)
        self.assertRaisesValueError(["needs an optimizer"], TENT(classifier()).adapt_and_predict, self.x)
        self.assertTrue(os.path.isdir(self.get_temp_dir()))
