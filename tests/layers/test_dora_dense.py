import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import DoRADense
from tests.layers.dora_reference import dora_values
from tests.layers.dora_reference import numpy_dora_kernel
from tests.layers.dora_reference import randomize_dora
from tests.test_case import TestCase


class DoRADenseTest(TestCase):
    def test_layer(self):
        self.run_layer_test(
            DoRADense,
            {"units": 3, "dora_rank": 2, "activation": "relu"},
            input_shape=(4, 5),
            expected_output_shape=(4, 3),
            expected_num_trainable_weights=3,  # A, B, m
            expected_num_non_trainable_weights=2,  # the frozen kernel and bias
        )

    def test_forward_equals_numpy_formula(self):
        layer = DoRADense(3, dora_rank=2, dora_alpha=6.0, activation="tanh")
        x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
        layer(x)
        randomize_dora(layer)
        layer.bias.assign(np.array([0.1, -0.2, 0.3]))
        w0, a, b, m = dora_values(layer)
        kernel = numpy_dora_kernel(w0, a, b, m, 6.0, 2, (0,), (1,))
        expected = np.tanh(x @ kernel + np.array([0.1, -0.2, 0.3]))
        self.assertAllClose(layer(x), expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(np.linalg.norm(kernel, axis=0), m, atol=1e-5)  # ||W'||_c = m

    def test_enable_on_pretrained_weights_is_the_base(self):
        dense = keras.layers.Dense(4, activation="relu")
        x = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
        expected = dense(x)
        layer = DoRADense.from_config(dense.get_config())
        layer(x)
        layer.set_weights(dense.get_weights())
        layer.enable_dora(3)
        self.assertAllClose(layer(x), expected, atol=0, rtol=0)
        self.assertAllClose(layer.dora_magnitude, np.linalg.norm(dense.kernel.numpy(), axis=0), atol=1e-6)
        self.assertEqual(layer.get_config()["dora_rank"], 3)

    def test_gradient_exact_and_detached(self):
        x = np.random.default_rng(3).normal(size=(2, 4))
        for detach in (False, True):
            layer = DoRADense(3, dora_rank=2, dora_detach_norm=detach, dtype="float64")
            layer(x)
            randomize_dora(layer, seed=4)
            variables = [layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude]

            def loss(a, b, m, layer=layer, variables=variables):
                mapping = list(zip(variables, (a, b, m)))
                with keras.StatelessScope(state_mapping=mapping):
                    return tf.reduce_sum(tf.sin(layer(x)))

            values = [v.numpy() for v in variables]
            if not detach:
                self.run_gradient_check(loss, values)
                continue
            with self.assertRaises(AssertionError):  # no gradient through ||V||_c: not the exact one
                self.run_gradient_check(loss, values)

    def test_rank_errors(self):
        for rank in (0, -1, 2.5):
            self.assertRaisesValueError(
                ["`dora_rank` must be", f"Received: dora_rank={rank!r}", "dora_rank=4"], DoRADense, 3, dora_rank=rank
            )
        self.assertRaisesValueError(
            ["`rank` must be an int between 1 and", "min(5, 3) = 3", "Received: rank=4", "smaller"],
            DoRADense(3, dora_rank=4),
            np.ones((1, 5), "float32"),
        )

    def test_no_dora_with_lora(self):
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        layer.enable_lora(2)
        layer.__class__ = DoRADense
        layer.init_dora(None, None, False)
        self.assertRaisesValueError("already has DoRA or LoRA enabled", layer.enable_dora, 2)
