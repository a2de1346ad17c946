import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import GradientReversal
from keras_transfer.layers import reverse_gradient
from tests.test_case import TestCase


def _inner(x, w):
    """A smooth map whose gradient the reversal must negate: tanh(x @ w)."""
    return tf.tanh(tf.matmul(x, w))


def _finite_difference(fn, x, eps=1e-5):
    """Central differences of scalar `fn` at float64 `x` (the independent reference)."""
    grad = np.zeros_like(x)
    flat = grad.reshape(-1)
    for j in range(x.size):
        plus, minus = x.copy().reshape(-1), x.copy().reshape(-1)
        plus[j] += eps
        minus[j] -= eps
        flat[j] = (float(fn(plus.reshape(x.shape))) - float(fn(minus.reshape(x.shape)))) / (2 * eps)
    return grad


class GradientReversalTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(3, 4))
        self.w = rng.normal(size=(4, 2))
        self.c = rng.normal(size=(3, 2))

    def _loss(self, x, factor=None):
        h = _inner(tf.constant(x) if not isinstance(x, tf.Variable) else x, tf.constant(self.w))
        if factor is not None:
            h = reverse_gradient(h, factor)
        return tf.reduce_sum(tf.constant(self.c) * tf.sin(h))

    def test_layer_basics(self):
        self.run_layer_test(
            GradientReversal,
            {"factor": 0.5},
            input_shape=(4, 3),
            expected_output_shape=(4, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
        )

    def test_forward_is_exact_identity(self):
        x = np.random.default_rng(1).normal(size=(5, 7)).astype("float32")
        y = GradientReversal(factor=3.0)(x)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), x)

    def test_gradient_is_minus_factor_times_finite_differences(self):
        for factor in (0.0, 0.7, 2.5):
            reference = -factor * _finite_difference(lambda v: self._loss(v), self.x)
            variable = tf.Variable(self.x)
            with tf.GradientTape() as tape:
                value = self._loss(variable, factor)
            self.assertAllClose(tape.gradient(value, variable), reference, atol=1e-7, rtol=1e-6)

    def test_layer_gradient_eager_function_and_xla(self):
        layer = GradientReversal(factor=0.25)
        reference = -0.25 * _finite_difference(lambda v: self._loss(v), self.x)
        x32 = self.x.astype("float32")
        w32 = self.w.astype("float32")
        c32 = self.c.astype("float32")

        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tf.reduce_sum(c32 * tf.sin(layer(_inner(x, w32))))
            return tape.gradient(value, x)

        for fn in (grad, tf.function(grad), tf.function(grad, jit_compile=True)):
            self.assertAllClose(fn(tf.constant(x32)), reference, atol=1e-5, rtol=1e-4)

    def test_factor_change_does_not_retrace(self):
        layer = GradientReversal(factor=1.0)
        x = tf.constant(self.x.astype("float32"))

        @tf.function(jit_compile=True)
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = tf.reduce_sum(layer(x))
            return tape.gradient(value, x)

        self.assertAllClose(grad(x), -np.ones_like(self.x))
        traces = grad.experimental_get_tracing_count()
        layer.factor = 0.3
        self.assertAllClose(grad(x), -0.3 * np.ones_like(self.x))
        self.assertEqual(grad.experimental_get_tracing_count(), traces)

    def test_factor_in_compiled_fit(self):
        # a -> GRL -> b: the update of `a` is lr * factor * dL/da (sign reversed).
        inputs = keras.Input((1,))
        a = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name="a")
        b = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(2.0), name="b")
        grl = GradientReversal(factor=1.0)
        model = keras.Model(inputs, b(grl(a(inputs))))
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True)
        x = np.array([[1.0], [2.0]], "float32")
        t = np.array([[0.0], [1.0]], "float32")
        for factor in (1.0, 0.5, 0.0):
            grl.factor = factor
            wa, wb = float(a.kernel.numpy()[0, 0]), float(b.kernel.numpy()[0, 0])
            y = wb * wa * x
            grad_a = float(np.mean(2 * (y - t) * wb * x))  # plain dL/da, no reversal
            model.train_on_batch(x, t)
            self.assertAllClose(a.kernel.numpy()[0, 0], wa - 0.01 * (-factor * grad_a), atol=1e-6)

    def test_mixed_float16(self):
        keras.config.set_dtype_policy("mixed_float16")
        layer = GradientReversal(factor=0.5)
        x = tf.constant(self.x.astype("float16"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            value = tf.reduce_sum(y)
        self.assertEqual(y.dtype, tf.float16)
        grad = tape.gradient(value, x)
        self.assertEqual(grad.dtype, tf.float16)
        self.assertAllClose(grad, -0.5 * np.ones_like(self.x), atol=1e-3)
        self.assertEqual(layer.weights[0].dtype, "float32")

    def test_changed_factor_survives_keras_round_trip(self):
        inputs = keras.Input((3,))
        grl = GradientReversal(factor=1.0)
        model = keras.Model(inputs, keras.layers.Dense(2)(grl(inputs)))
        grl.factor = 0.375
        path = os.path.join(self.get_temp_dir(), "grl.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        layer = [layer for layer in reloaded.layers if isinstance(layer, GradientReversal)][0]
        self.assertAllClose(layer.factor, 0.375)
        self.assertAllClose(GradientReversal.from_config(grl.get_config()).factor, 0.375)

    def test_config(self):
        self.assertEqual(GradientReversal(factor=2.0, name="g").get_config()["factor"], 2.0)

    def test_errors(self):
        self.assertRaisesValueError(
            ["`factor`", "Received: factor=-1.0", "never a negative"], GradientReversal, factor=-1.0
        )
        self.assertRaisesValueError(["`factor`", "Received: factor='a'"], GradientReversal, factor="a")
        self.assertRaisesValueError(["`factor`", "inf"], GradientReversal, factor=float("inf"))
        self.assertRaisesValueError(["`factor`", "nan"], GradientReversal, factor=float("nan"))
        self.assertRaisesValueError("`factor`", reverse_gradient, np.ones((2, 2)), -0.1)
        layer = GradientReversal()
        layer.build((None, 2))
        with self.assertRaises(ValueError):
            layer.factor = -2
        self.assertAllClose(layer.factor, 1.0)
