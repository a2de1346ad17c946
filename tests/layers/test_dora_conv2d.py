import keras
import numpy as np

from keras_transfer.layers import DoRAConv2D
from tests.layers.dora_reference import dora_values
from tests.layers.dora_reference import numpy_dora_kernel
from tests.layers.dora_reference import randomize_dora
from tests.layers.test_conv_adapter import numpy_conv2d
from tests.test_case import TestCase


class DoRAConv2DTest(TestCase):
    def test_layer(self):
        self.run_layer_test(
            DoRAConv2D,
            {"filters": 4, "kernel_size": 3, "padding": "same", "dora_rank": 2},
            input_shape=(2, 6, 6, 3),
            expected_output_shape=(2, 6, 6, 4),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=2,
        )

    def test_forward_equals_numpy_formula(self):
        layer = DoRAConv2D(4, 3, strides=2, padding="same", dora_rank=3, dora_alpha=1.5)
        x = np.random.default_rng(1).normal(size=(2, 7, 7, 3)).astype("float32")
        layer(x)
        randomize_dora(layer)
        w0, a, b, m = dora_values(layer)
        self.assertEqual((a.shape, b.shape, m.shape), ((3, 3, 3, 3), (3, 4), (4,)))
        kernel = numpy_dora_kernel(w0, a, b, m, 1.5, 3, (0, 1, 2), (3,))
        expected = numpy_conv2d(x, kernel, keras.ops.convert_to_numpy(layer.bias), 2, "same")
        self.assertAllClose(layer(x), expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(np.sqrt((kernel**2).sum(axis=(0, 1, 2))), m, atol=1e-5)  # one magnitude per filter

    def test_enable_on_pretrained_weights_is_the_base(self):
        plain = keras.layers.Conv2D(5, 3, activation="relu")
        x = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
        expected = plain(x)
        layer = DoRAConv2D.from_config(plain.get_config())
        layer(x)
        layer.set_weights(plain.get_weights())
        layer.enable_dora(4)
        self.assertAllClose(layer(x), expected, atol=0, rtol=0)
        self.assertRaisesValueError(["min(27, 5) = 5", "Received: rank=6"], DoRAConv2D(5, 3, dora_rank=6), x)
