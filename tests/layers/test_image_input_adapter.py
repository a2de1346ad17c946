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

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`target_size`", "(0, 4)"], ImageInputAdapter, target_size=(0, 4))
        self.assertRaisesValueError(["`target_size`", "(4, 4, 4)"], ImageInputAdapter, target_size=(4, 4, 4))
        self.assertRaisesValueError(["`channels`", "channels=2"], ImageInputAdapter, channels=2)
        layer = ImageInputAdapter(target_size=4)
        self.assertRaisesValueError(["`inputs`", "(1, 4, 4, 2)"], layer, np.zeros((1, 4, 4, 2), "float32"))
        self.assertRaisesValueError(["`inputs`", "(1, 4, 4)"], ImageInputAdapter(), np.zeros((1, 4, 4), "float32"))
