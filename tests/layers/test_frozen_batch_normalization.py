import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import FrozenBatchNormalization
from tests.test_case import TestCase

HAS_RENORM = "renorm" in inspect.signature(keras.layers.BatchNormalization.__init__).parameters


def numpy_batchnorm(x, gamma, beta, mean, variance, epsilon, axis=-1):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = lambda v: np.reshape(v, shape)  # noqa: E731
    return r(gamma) * (x - r(mean)) / np.sqrt(r(variance) + epsilon) + r(beta)


def randomise_statistics(layer, seed=0):
    rng = np.random.default_rng(seed)
    channels = layer.moving_mean.shape[0]
    layer.moving_mean.assign(rng.normal(size=channels))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=channels))
    layer.gamma.assign(rng.uniform(0.5, 1.5, size=channels))
    layer.beta.assign(rng.normal(size=channels))


class FrozenBatchNormalizationTest(TestCase):
    def test_layer_basics(self):
        # Harness: config round trip, fit (gamma/beta move), .keras without custom_objects, export,
        # mixed_float16 step.
        layer = self.run_layer_test(
            FrozenBatchNormalization,
            {"momentum": 0.9, "epsilon": 1e-2},
            input_shape=(4, 3, 3, 2),
            expected_output_shape=(4, 3, 3, 2),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=2,
        )
        self.assertFalse(layer.get_config().get("renorm", False))  # Keras < 3.14 has no renorm

    def test_values_match_numpy_formula_in_both_modes(self):
        rng = np.random.default_rng(1)
        x = (rng.normal(size=(5, 4, 3)) * 3 + 2).astype("float32")
        for axis in (-1, 1):
            layer = FrozenBatchNormalization(axis=axis, epsilon=1e-3)
            layer.build(x.shape)
            randomise_statistics(layer, seed=axis + 5)
            before = [w.numpy().copy() for w in layer.weights]
            weights = [
                w.numpy().astype("float64") for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
            ]
            expected = numpy_batchnorm(x.astype("float64"), *weights, 1e-3, axis=axis)
            for training in (True, False, None):
                self.assertAllClose(
                    layer(x, training=training), expected, atol=1e-5, rtol=1e-5, msg=f"axis={axis} training={training}"
                )
            for w, value in zip(layer.weights, before):
                self.assertAllClose(w, value, atol=0, rtol=0, msg=f"{w.path} changed in a call")
        # A plain BatchNormalization uses batch statistics with training=True: the frozen layer does not.
        bn = keras.layers.BatchNormalization()
        bn.build(x.shape)
        self.assertNotAllClose(
            bn(x, training=True), FrozenBatchNormalization.from_batch_normalization(bn)(x, training=True), atol=1e-3
        )

    def test_fit_trains_affine_and_keeps_statistics(self):
        rng = np.random.default_rng(2)
        x = (rng.normal(size=(16, 3)) * 2 + 1).astype("float32")
        y = rng.normal(size=(16, 3)).astype("float32")

        def model_with(layer_cls):
            keras.utils.set_random_seed(0)
            inputs = keras.Input((3,))
            layer = layer_cls(name="bn")
            model = keras.Model(inputs, layer(inputs))
            randomise_statistics(layer, seed=3)
            model.compile(keras.optimizers.SGD(0.1), "mse")
            return model, layer

        model, layer = model_with(FrozenBatchNormalization)
        statistics = [layer.moving_mean, layer.moving_variance]
        values = [v.numpy().copy() for v in statistics]
        gamma, beta = layer.gamma.numpy().copy(), layer.beta.numpy().copy()
        self.run_fit_test(model, x, y, batch_size=4, steps=3, frozen=statistics)
        self.assertNotAllClose(layer.gamma, gamma)
        self.assertNotAllClose(layer.beta, beta)
        for v, before in zip(statistics, values):
            self.assertAllClose(v, before, atol=0, rtol=0)
        # The contrast this layer exists for: a trainable BatchNormalization moves its statistics in fit.
        plain, plain_layer = model_with(keras.layers.BatchNormalization)
        mean = plain_layer.moving_mean.numpy().copy()
        plain.fit(x, y, batch_size=4, epochs=1, verbose=0)
        self.assertNotAllClose(plain_layer.moving_mean, mean, atol=1e-4)

    def test_gradients_match_finite_differences_and_formula(self):
        rng = np.random.default_rng(4)
        layer = FrozenBatchNormalization(dtype="float64", epsilon=1e-2)
        layer.build((3, 2, 4))
        randomise_statistics(layer, seed=5)
        mean, variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
        non_trainable = [layer.moving_mean.value, layer.moving_variance.value]

        def fn(x, gamma, beta):
            y, _ = layer.stateless_call([gamma, beta], non_trainable, x, training=True)
            return tf.reduce_sum(tf.sin(y))

        x = rng.normal(size=(3, 2, 4))
        gamma, beta = rng.uniform(0.5, 1.5, size=4), rng.normal(size=4)
        self.run_gradient_check(fn, [x, gamma, beta])
        # Analytic: dL/dgamma = sum cos(y) * x_hat, dL/dbeta = sum cos(y), x_hat from the moving statistics.
        x_hat = (x - mean) / np.sqrt(variance + 1e-2)
        g = np.cos(gamma * x_hat + beta)
        tensors = [tf.Variable(v) for v in (x, gamma, beta)]
        with tf.GradientTape() as tape:
            value = fn(*tensors)
        _, d_gamma, d_beta = tape.gradient(value, tensors)
        self.assertAllClose(d_gamma, (g * x_hat).sum(axis=(0, 1)), atol=1e-10)
        self.assertAllClose(d_beta, g.sum(axis=(0, 1)), atol=1e-10)

    def test_from_batch_normalization_copies_config_and_weights(self):
        rng = np.random.default_rng(6)
        x = rng.normal(size=(2, 3, 5)).astype("float32")
        bn = keras.layers.BatchNormalization(axis=1, epsilon=0.01, momentum=0.5, name="bn_axis1")
        bn.build(x.shape)
        randomise_statistics(bn, seed=7)
        bn.trainable = False
        frozen = FrozenBatchNormalization.from_batch_normalization(bn)
        self.assertEqual(frozen.name, "bn_axis1")
        self.assertFalse(frozen.trainable)
        self.assertEqual((frozen.axis, frozen.epsilon, frozen.momentum), (1, 0.01, 0.5))
        for a, b in zip(frozen.weights, bn.weights):
            self.assertAllClose(a, b, atol=0, rtol=0)
        self.assertAllClose(frozen(x, training=True), bn(x, training=False), atol=0, rtol=0)
        # Renormalising and unbuilt layers; no centre / scale.
        # Keras >= 3.14 has batch renormalisation; 3.13 (the Kaggle image) has no such argument.
        renorm_kwargs = {"renorm": True} if HAS_RENORM else {}
        renorm = keras.layers.BatchNormalization(center=False, **renorm_kwargs)
        renorm.build((None, 4))
        renorm.moving_variance.assign(np.random.default_rng(8).uniform(0.5, 2, size=4))
        converted = FrozenBatchNormalization.from_batch_normalization(renorm, name="converted")
        self.assertEqual(converted.name, "converted")
        self.assertLen(converted.weights, 3)
        x2 = rng.normal(size=(3, 4)).astype("float32")
        self.assertAllClose(converted(x2), renorm(x2, training=False), atol=1e-6)
        unbuilt = FrozenBatchNormalization.from_batch_normalization(keras.layers.BatchNormalization())
        self.assertFalse(unbuilt.built)

    def test_mixed_float16_keeps_statistics(self):
        keras.config.set_dtype_policy("mixed_float16")
        layer = FrozenBatchNormalization()
        x = np.random.default_rng(9).normal(size=(4, 3)).astype("float16")
        layer.build(x.shape)
        randomise_statistics(layer, seed=10)
        mean = layer.moving_mean.numpy().copy()
        y = layer(x, training=True)
        self.assertEqual(y.dtype, "float16")
        self.assertEqual(layer.moving_mean.dtype, "float32")
        weights = [w.numpy() for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)]
        self.assertAllClose(
            np.asarray(y, "float32"), numpy_batchnorm(x.astype("float64"), *weights, 1e-3), atol=5e-3, rtol=5e-3
        )
        self.assertAllClose(layer.moving_mean, mean, atol=0, rtol=0)

    def test_errors(self):
        self.assertRaisesValueError(
            ["`renorm` must be False", "Received: renorm=True"], FrozenBatchNormalization, renorm=True
        )
        self.assertRaisesValueError(
            ["`layer` must be a keras.layers.BatchNormalization", "Dense"],
            FrozenBatchNormalization.from_batch_normalization,
            keras.layers.Dense(2),
        )
