import numpy as np
import tensorflow as tf

from keras_transfer.layers import ImageInputAdapter
from tests.test_case import TestCase


class ImageInputAdapterTest(TestCase):
    def test_grey_to_rgb_and_resize(self):
        x = np.random.default_rng(0).uniform(0, 255, size=(2, 8, 8, 1)).astype("float32")
        out = ImageInputAdapter(target_size=(16, 12), channels=3)(x)
        expected = tf.image.resize(np.repeat(x, 3, axis=-1), (16, 12), method="bilinear", antialias=True)
        self.assertAllClose(out, expected, atol=1e-3, rtol=1e-5)
        self.assertEqual(tuple(out.shape), (2, 16, 12, 3))

    def test_rgb_to_grey_is_bt601_luminance(self):
        x = np.random.default_rng(1).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
        out = ImageInputAdapter(channels=1)(x)
        expected = 0.299 * x[..., :1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:]
        self.assertAllClose(out, expected, atol=1e-3, rtol=1e-5)
        # tf.image.rgb_to_grayscale uses BT.601 rounded to 4 digits (0.2989, ...): 0.0001 * 255 apart.
        self.assertAllClose(out, tf.image.rgb_to_grayscale(x), atol=5e-2, rtol=0)

    def test_identity_when_nothing_to_do(self):
        x = np.random.default_rng(2).uniform(size=(1, 5, 5, 3)).astype("float32")
        self.assertAllClose(ImageInputAdapter(target_size=5, channels=3)(x), x)

    def test_harness(self):
        self.run_layer_test(
            ImageInputAdapter,
            {"target_size": (6, 6), "channels": 3},
            input_shape=(2, 4, 4, 1),
            expected_output_shape=(2, 6, 6, 3),
            expected_num_trainable_weights=0,
        )

    def test_gradient(self):
        # TF's resize gradient has no float64 kernel: run the layer in float32. The loss is
        # quadratic in x, so central differences are exact up to float32 rounding.
        layer = ImageInputAdapter(target_size=(3, 3), channels=3)
        x = np.random.default_rng(3).normal(size=(1, 2, 2, 1))
        self.run_gradient_check(
            lambda t: tf.cast(tf.reduce_sum(layer(tf.cast(t, "float32")) ** 2), "float64"),
            [x],
            eps=1e-2,
            atol=2e-3,
            rtol=2e-3,
        )

    def test_jet_pseudo_colour_matches_the_piecewise_linear_colormap(self):
        x = np.linspace(0, 255, 101, dtype="float32").reshape(1, 1, 101, 1)
        out = ImageInputAdapter(channels=3, grey_to_rgb="jet")(x).numpy()[0, 0] / 255.0
        v = np.linspace(0, 1, 101)
        # MATLAB's jet as breakpoints (red, green, blue), interpolated linearly.
        red = np.interp(v, [0, 0.375, 0.625, 0.875, 1], [0, 0, 1, 1, 0.5])
        green = np.interp(v, [0, 0.125, 0.375, 0.625, 0.875, 1], [0, 0, 1, 1, 0, 0])
        blue = np.interp(v, [0, 0.125, 0.375, 0.625, 1], [0.5, 1, 1, 0, 0])
        self.assertAllClose(out, np.stack([red, green, blue], axis=-1), atol=1e-5)
        # Distinct grey levels get distinct colours (replication keeps them on the grey axis).
        self.assertEqual(len(np.unique(np.round(out, 4), axis=0)), 101)

    def test_learned_colour_map_starts_as_replication_and_trains(self):
        x = np.random.default_rng(4).uniform(0, 255, size=(4, 6, 6, 1)).astype("float32")
        layer = ImageInputAdapter(target_size=8, channels=3, grey_to_rgb="learned")
        replicate = ImageInputAdapter(target_size=8, channels=3)
        self.assertAllClose(layer(x), replicate(x), atol=1e-3)
        self.assertEqual([w.name for w in layer.trainable_weights], ["colour_scale", "colour_shift"])
        self.run_layer_test(
            ImageInputAdapter,
            {"target_size": (6, 6), "channels": 3, "grey_to_rgb": "learned", "value_range": (0, 1)},
            input_shape=(2, 4, 4, 1),
            expected_output_shape=(2, 6, 6, 3),
            expected_num_trainable_weights=2,
        )
        # d/d scale_c sum(out_c) = sum(resized grey); d/d shift_c = number of output pixels.
        layer = ImageInputAdapter(channels=3, grey_to_rgb="learned")
        layer.build((None, 6, 6, 1))
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(layer(x) * np.array([1.0, 2.0, 3.0], "float32"))
        d_scale, d_shift = tape.gradient(total, [layer.colour_scale, layer.colour_shift])
        self.assertAllClose(d_scale, x.sum() * np.array([1.0, 2.0, 3.0]), rtol=1e-5)
        self.assertAllClose(d_shift, x.size * np.array([1.0, 2.0, 3.0]), rtol=1e-6)

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`grey_to_rgb`", "'viridis'"], ImageInputAdapter, grey_to_rgb="viridis")
        self.assertRaisesValueError(
            ["`grey_to_rgb`", "channels=1", "'replicate'"], ImageInputAdapter, channels=1, grey_to_rgb="jet"
        )
        self.assertRaisesValueError(
            ["`inputs`", "grey_to_rgb='learned'", "(1, 4, 4, 3)", "'replicate'"],
            ImageInputAdapter(grey_to_rgb="learned"),
            np.zeros((1, 4, 4, 3), "float32"),
        )
        self.assertRaisesValueError(
            ["`value_range`", "(1, 0)"], ImageInputAdapter, grey_to_rgb="jet", value_range=(1, 0)
        )
        self.assertRaisesValueError(["`target_size`", "(0, 4)"], ImageInputAdapter, target_size=(0, 4))
        self.assertRaisesValueError(["`target_size`", "(4, 4, 4)"], ImageInputAdapter, target_size=(4, 4, 4))
        self.assertRaisesValueError(["`channels`", "channels=2"], ImageInputAdapter, channels=2)
        layer = ImageInputAdapter(target_size=4)
        self.assertRaisesValueError(["`inputs`", "(1, 4, 4, 2)"], layer, np.zeros((1, 4, 4, 2), "float32"))
        self.assertRaisesValueError(["`inputs`", "(1, 4, 4)"], ImageInputAdapter(), np.zeros((1, 4, 4), "float32"))
