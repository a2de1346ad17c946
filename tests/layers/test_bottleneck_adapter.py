import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import BottleneckAdapter
from tests.test_case import TestCase


def numpy_adapter(x, wd, bd, wu, bu, activation, gamma=None, beta=None, eps=1e-5, scale=1.0):
    """Houlsby et al. (2019): y = x + W_up f(W_down LN(x)), written from the paper."""
    h = x.astype("float64")
    if gamma is not None:
        mean = h.mean(axis=-1, keepdims=True)
        var = ((h - mean) ** 2).mean(axis=-1, keepdims=True)
        h = (h - mean) / np.sqrt(var + eps) * gamma + beta
    h = activation(h @ wd + bd)
    return x + scale * (h @ wu + bu)


def relu(z):
    return np.maximum(z, 0.0)


class BottleneckAdapterTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            BottleneckAdapter,
            {"bottleneck_dim": 3},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 8),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
        )

    def test_layer_basics_with_layer_norm_rank_4(self):
        self.run_layer_test(
            BottleneckAdapter,
            {"bottleneck_dim": 2, "use_layer_norm": True, "activation": "gelu"},
            input_shape=(2, 3, 3, 4),
            expected_output_shape=(2, 3, 3, 4),
            expected_num_trainable_weights=6,
            run_export=False,
        )

    def test_identity_at_initialisation_any_rank(self):
        rng = np.random.default_rng(1)
        for shape in [(3, 6), (3, 4, 6), (2, 3, 3, 6), (2, 2, 2, 2, 6)]:
            x = rng.normal(size=shape).astype("float32")
            layer = BottleneckAdapter(4, use_layer_norm=True)
            self.assertAllClose(layer(x), x, atol=0, rtol=0)

    def test_values_match_numpy(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(2, 5, 6)).astype("float32")
        for use_ln, scale in [(False, 1.0), (True, 0.5)]:
            layer = BottleneckAdapter(3, use_layer_norm=use_ln, scale=scale)
            layer.build(x.shape)
            wd, bd = rng.normal(size=(6, 3)), rng.normal(size=3)
            wu, bu = rng.normal(size=(3, 6)), rng.normal(size=6)
            layer.down_kernel.assign(wd)
            layer.down_bias.assign(bd)
            layer.up_kernel.assign(wu)
            layer.up_bias.assign(bu)
            gamma = beta = None
            if use_ln:
                gamma, beta = rng.normal(size=6), rng.normal(size=6)
                layer.layer_norm.gamma.assign(gamma)
                layer.layer_norm.beta.assign(beta)
            expected = numpy_adapter(x, wd, bd, wu, bu, relu, gamma, beta, scale=scale)
            self.assertAllClose(layer(x), expected, atol=1e-4, rtol=1e-4)

    def test_parameter_count(self):
        layer = BottleneckAdapter(4, use_layer_norm=True)
        layer.build((None, 10))
        self.assertEqual(layer.count_params(), 2 * 10 * 4 + 10 + 4 + 2 * 10)

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(3)
        layer = BottleneckAdapter(2, activation="tanh", use_layer_norm=True, dtype="float64")
        layer.build((2, 3, 4))
        trainable = [rng.normal(size=v.shape) for v in layer.trainable_variables]

        def fn(x, *weights):
            y, _ = layer.stateless_call(list(weights), [], x)
            return tf.reduce_sum(y * y)

        x = rng.normal(size=(2, 3, 4))
        self.run_gradient_check(fn, [x] + trainable)

    def test_mixed_precision_output_dtype(self):
        keras.config.set_dtype_policy("mixed_float16")
        layer = BottleneckAdapter(2, use_layer_norm=True)
        y = layer(np.ones((2, 4), "float16"))
        self.assertEqual(keras.backend.standardize_dtype(y.dtype), "float16")
        self.assertEqual(keras.backend.standardize_dtype(layer.down_kernel.dtype), "float32")

    def test_mask_passes_through(self):
        inputs = keras.Input((3, 4))
        masked = keras.layers.Masking()(inputs)
        outputs = BottleneckAdapter(2)(masked)
        self.assertIsNotNone(outputs._keras_mask)

    def test_bad_arguments(self):
        for bad in [0, -1, 2.5, "4", True]:
            self.assertRaisesValueError(
                ["`bottleneck_dim` must be a positive integer", "Received: bottleneck_dim="], BottleneckAdapter, bad
            )
        self.assertRaisesValueError("`scale` must be a positive finite number", BottleneckAdapter, 2, scale=0)
        self.assertRaisesValueError("`epsilon`", BottleneckAdapter, 2, epsilon=-1.0)

    def test_bottleneck_larger_than_features(self):
        layer = BottleneckAdapter(9)
        self.assertRaisesValueError(
            ["`bottleneck_dim` must be at most the feature size 8", "Received: bottleneck_dim=9"],
            layer,
            np.zeros((2, 8), "float32"),
        )

    def test_wrong_rank(self):
        layer = BottleneckAdapter(2)
        self.assertRaisesValueError(["rank >= 2", "input_shape=(8,)"], layer.build, (8,))

    def test_unknown_feature_axis(self):
        self.assertRaisesValueError("known last (feature) axis", BottleneckAdapter(2).build, (None, 4, None))
