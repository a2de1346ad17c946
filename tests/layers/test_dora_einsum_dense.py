import keras
import numpy as np

from keras_transfer.layers import DoRAEinsumDense
from keras_transfer.layers._dora_kernel import einsum_kernel_axes
from tests.layers.dora_reference import dora_values
from tests.layers.dora_reference import numpy_dora_kernel
from tests.layers.dora_reference import randomize_dora
from tests.test_case import TestCase


class DoRAEinsumDenseTest(TestCase):
    def test_layer(self):
        self.run_layer_test(
            DoRAEinsumDense,
            {"equation": "abc,cde->abde", "output_shape": (5, 2, 4), "bias_axes": "de", "dora_rank": 3},
            input_shape=(2, 5, 8),
            expected_output_shape=(2, 5, 2, 4),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=2,
        )

    def test_kernel_axes(self):
        self.assertEqual(einsum_kernel_axes("abc,cde->abde", 3), ((0,), (1, 2)))  # attention query / key / value
        self.assertEqual(einsum_kernel_axes("abcd,cde->abe", 3), ((0, 1), (2,)))  # attention output
        self.assertEqual(einsum_kernel_axes("...b,bc->...c", 2), ((0,), (1,)))
        self.assertEqual(einsum_kernel_axes("ab,cb->ac", 2), ((1,), (0,)))  # transposed kernel layout

    def test_forward_equals_numpy_formula(self):
        rng = np.random.default_rng(1)
        cases = [
            ("abc,cde->abde", (None, 2, 4), (2, 5, 8), "abc,cde->abde"),
            ("abcd,cde->abe", (None, 6), (2, 5, 2, 4), "abcd,cde->abe"),
            ("ab,cb->ac", (3,), (4, 5), "ab,cb->ac"),
        ]
        for equation, output_shape, x_shape, numpy_equation in cases:
            layer = DoRAEinsumDense(equation, output_shape=output_shape, dora_rank=2, dora_alpha=3.0)
            x = rng.normal(size=x_shape).astype("float32")
            layer(x)
            randomize_dora(layer)
            w0, a, b, m = dora_values(layer)
            in_axes, out_axes = einsum_kernel_axes(equation, w0.ndim)
            kernel = numpy_dora_kernel(w0, a, b, m, 3.0, 2, in_axes, out_axes)
            self.assertAllClose(layer(x), np.einsum(numpy_equation, x, kernel), atol=1e-5, rtol=1e-5, msg=equation)

    def test_rank_limit_is_the_flattened_sizes(self):
        layer = DoRAEinsumDense("abcd,cde->abe", output_shape=(None, 3), dora_rank=4)
        self.assertRaisesValueError(["min(8, 3) = 3", "Received: rank=4"], layer, np.ones((1, 2, 2, 4), "float32"))

    def test_enable_on_pretrained_weights_is_the_base(self):
        plain = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
        x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype("float32")
        expected = plain(x)
        layer = DoRAEinsumDense.from_config(plain.get_config())
        layer(x)
        layer.set_weights(plain.get_weights())
        layer.enable_dora(2)
        self.assertAllClose(layer(x), expected, atol=0, rtol=0)
        self.assertEqual(tuple(layer.dora_magnitude.shape), (2, 4))
