import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import ConvAdapter
from tests.test_case import TestCase


def numpy_conv2d(x, w, b, stride, padding, dilation=1):
    """Direct 2-D cross-correlation with TensorFlow's padding rule (extra padding after)."""
    n, h, wd, c = x.shape
    kh, kw, _, d = w.shape
    out = []
    for size, k in ((h, kh), (wd, kw)):
        ext = (k - 1) * dilation + 1
        if padding == "same":
            o = -(-size // stride)
            pad = max((o - 1) * stride + ext - size, 0)
            out.append((o, pad // 2, pad - pad // 2))
        else:
            out.append(((size - ext) // stride + 1, 0, 0))
    (oh, ph, _), (ow, pw, _) = out
    xp = np.zeros((n, h + 2 * (kh * dilation), wd + 2 * (kw * dilation), c))
    xp[:, ph : ph + h, pw : pw + wd] = x
    y = np.zeros((n, oh, ow, d))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for bb in range(kw):
                    y[:, i, j] += xp[:, i * stride + a * dilation, j * stride + bb * dilation] @ w[a, bb]
    return y + b


def parallel_model(x_shape, filters, kernel_size, strides, padding, per_channel=False, dilation=1):
    inputs = keras.Input(x_shape)
    fx = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation, name="conv"
    )(inputs)
    outputs = ConvAdapter(
        "parallel",
        per_channel=per_channel,
        host_kernel_size=(kernel_size, kernel_size),
        host_strides=(strides, strides),
        host_padding=padding,
        host_dilation_rate=(dilation, dilation),
        name="adapter",
    )([inputs, fx])
    return keras.Model(inputs, outputs)


class ConvAdapterSeriesTest(TestCase):
    def test_layer_basics_full(self):
        self.run_layer_test(
            ConvAdapter,
            {"mode": "series"},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=1,
        )

    def test_layer_basics_per_channel_with_bias_rank_3(self):
        layer = self.run_layer_test(
            ConvAdapter,
            {"mode": "series", "per_channel": True, "use_bias": True},
            input_shape=(2, 5, 3),
            expected_output_shape=(2, 5, 3),
            expected_num_trainable_weights=2,
            run_export=False,
        )
        self.assertEqual(tuple(layer.alpha.shape), (3,))

    def test_identity_at_initialisation(self):
        x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
        for per_channel in (False, True):
            self.assertAllClose(ConvAdapter("series", per_channel=per_channel)(x), x, atol=0, rtol=0)

    def test_values_match_seed_formula(self):
        # rho(x) = x + diag_1(alpha) * x = diag_1(alpha + I) * x, a 1x1 conv at every position.
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
        layer = ConvAdapter("series", use_bias=True)
        layer.build(x.shape)
        alpha, bias = rng.normal(size=(4, 4)), rng.normal(size=4)
        layer.alpha.assign(alpha)
        layer.bias.assign(bias)
        expected = numpy_conv2d(x, (alpha + np.eye(4))[None, None], bias, 1, "valid")
        self.assertAllClose(layer(x), expected, atol=1e-5, rtol=1e-5)
        diag = ConvAdapter("series", per_channel=True)
        diag.build(x.shape)
        a = rng.normal(size=4)
        diag.alpha.assign(a)
        self.assertAllClose(diag(x), x * (1 + a), atol=1e-6)

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(2)
        layer = ConvAdapter("series", use_bias=True, dtype="float64")
        layer.build((2, 2, 2, 3))

        def fn(x, alpha, bias):
            y, _ = layer.stateless_call([alpha, bias], [], x)
            return tf.reduce_sum(tf.sin(y))

        self.run_gradient_check(fn, [rng.normal(size=(2, 2, 2, 3)), rng.normal(size=(3, 3)), rng.normal(size=3)])

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`mode` must be one of", "Received: mode='serial'"], ConvAdapter, "serial")
        self.assertRaisesValueError("only apply to mode='parallel'", ConvAdapter, "series", host_strides=2)
        self.assertRaisesValueError("`host_padding` must be one of", ConvAdapter, "parallel", host_padding="causal")
        self.assertRaisesValueError("must be odd", ConvAdapter, "parallel", host_kernel_size=(2, 2))
        self.assertRaisesValueError("positive int", ConvAdapter, "parallel", host_strides=(0, 1))

    def test_wrong_rank_and_inputs(self):
        self.assertRaisesValueError(["rank >= 2", "shape (4,)"], ConvAdapter("series").build, (4,))
        self.assertRaisesValueError("takes a single tensor", ConvAdapter("series").build, [(2, 4), (2, 4)])
        self.assertRaisesValueError("known channel", ConvAdapter("series").build, (2, 3, None))


class ConvAdapterParallelTest(TestCase):
    def test_model_steps(self):
        x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")

        def build():
            model = parallel_model((6, 6, 3), 5, 3, 2, "same")
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            return model

        model = build()
        y = np.random.default_rng(1).normal(size=(4, 3, 3, 5)).astype("float32")
        self.run_fit_test(model, x, y, batch_size=4)
        self.run_serialization_test(model, x)
        self.run_export_test(model, x)
        self.run_mixed_precision_test(build, x, y, batch_size=4)

    def test_identity_at_initialisation(self):
        x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype("float32")
        model = parallel_model((7, 7, 3), 4, 3, 2, "valid")
        conv = model.get_layer("conv")
        self.assertAllClose(model(x), conv(x), atol=0, rtol=0)

    def test_equals_additive_filter_perturbation(self):
        # Rebuffi et al. 2018: y = f * x + diag_1(alpha) * x = (f + diag_1(alpha)) * x, checked against a direct
        # NumPy convolution of the perturbed filter, for strided, valid and dilated hosts.
        rng = np.random.default_rng(3)
        for size, k, s, pad, dil in [
            (8, 3, 2, "same", 1),
            (7, 3, 2, "same", 1),
            (9, 3, 1, "valid", 1),
            (10, 5, 3, "same", 1),
            (9, 3, 1, "same", 2),
            (9, 3, 1, "valid", 2),
        ]:
            x = rng.normal(size=(2, size, size, 3)).astype("float32")
            model = parallel_model((size, size, 3), 4, k, s, pad, dilation=dil)
            conv, adapter = model.get_layer("conv"), model.get_layer("adapter")
            alpha = rng.normal(size=(3, 4))
            adapter.alpha.assign(alpha)
            w = conv.kernel.numpy().astype("float64")
            w[(k - 1) // 2, (k - 1) // 2] += alpha
            expected = numpy_conv2d(x, w, conv.bias.numpy(), s, pad, dil)
            self.assertAllClose(model(x), expected, atol=1e-4, rtol=1e-4, msg=f"size={size} k={k} s={s} {pad} d={dil}")

    def test_dynamic_spatial_size(self):
        inputs = keras.Input((None, None, 3))
        fx = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)
        out = ConvAdapter(
            "parallel",
            host_kernel_size=(3, 3),
            host_strides=(2, 2),
            host_padding="same",
            alpha_initializer="random_normal",
        )([inputs, fx])
        model = keras.Model(inputs, out)
        for size in (6, 7):
            x = np.random.default_rng(size).normal(size=(1, size, size, 3)).astype("float32")
            static = parallel_model((size, size, 3), 4, 3, 2, "same")
            static.set_weights(model.get_weights())
            self.assertAllClose(model.predict(x, verbose=0), static.predict(x, verbose=0), atol=1e-5)

    def test_per_channel_and_dense_host(self):
        rng = np.random.default_rng(4)
        x = rng.normal(size=(3, 4)).astype("float32")
        dense = keras.layers.Dense(4)
        layer = ConvAdapter("parallel", per_channel=True)
        y = layer([x, dense(x)])
        a = rng.normal(size=4)
        layer.alpha.assign(a)
        self.assertAllClose(layer([x, dense(x)]), dense(x).numpy() + x * a, atol=1e-6)
        self.assertEqual(tuple(y.shape), (3, 4))

    def test_errors(self):
        self.assertRaisesValueError("takes a list `[x, f_x]`", ConvAdapter("parallel").build, (2, 4, 4, 3))
        self.assertRaisesValueError("same rank", ConvAdapter("parallel").build, [(2, 4, 4, 3), (2, 4, 3)])
        self.assertRaisesValueError(
            ["per_channel=True", "3 input and 5 output"],
            ConvAdapter("parallel", per_channel=True).build,
            [(2, 4, 4, 3), (2, 4, 4, 5)],
        )
        self.assertRaisesValueError(
            ["host geometry does not match", "host_strides"],
            ConvAdapter("parallel").build,
            [(2, 8, 8, 3), (2, 4, 4, 5)],
        )
        self.assertRaisesValueError(
            "need spatial axes", ConvAdapter("parallel", host_strides=2).build, [(2, 3), (2, 5)]
        )

    def test_int_geometry_applies_to_every_axis_and_conv1d(self):
        rng = np.random.default_rng(5)
        x = rng.normal(size=(2, 9, 2)).astype("float32")
        conv = keras.layers.Conv1D(3, 3, strides=2, padding="same")
        fx = conv(x)
        layer = ConvAdapter("parallel", host_kernel_size=3, host_strides=2, host_padding="same")
        layer([x, fx])
        alpha = rng.normal(size=(2, 3))
        layer.alpha.assign(alpha)
        w = conv.kernel.numpy().copy()
        w[1] += alpha
        # Reference: a plain Conv1D with alpha added at the centre tap of its filter.
        ref = keras.layers.Conv1D(3, 3, strides=2, padding="same")
        ref.build(x.shape)
        ref.set_weights([w, conv.bias.numpy()])
        self.assertAllClose(layer([x, fx]), ref(x), atol=1e-5)
        self.assertEqual(layer._kernel_size, (3,))
