import keras
import numpy as np
import tensorflow as tf

from keras_transfer.layers import DINOHead
from tests.test_case import TestCase


def numpy_head(x, kernels, biases, prototypes, activation):
    """The official DINOHead: MLP, L2-normalised bottleneck, weight-normalised last layer with g = 1."""
    h = np.asarray(x, "float64")
    for i, (w, b) in enumerate(zip(kernels, biases)):
        h = h @ w + b
        if i < len(kernels) - 1:
            h = activation(h)
    z = h / np.linalg.norm(h, axis=-1, keepdims=True)
    v = prototypes / np.linalg.norm(prototypes, axis=0, keepdims=True)  # torch weight_norm, dim=0
    return z @ v


class DINOHeadTest(TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            DINOHead,
            {"out_dim": 7, "hidden_dim": 5, "bottleneck_dim": 3},
            input_shape=(4, 6),
            expected_output_shape=(4, 7),
            expected_num_trainable_weights=7,
            expected_num_non_trainable_weights=0,
        )

    def test_values_match_numpy(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(3, 6)).astype("float32")
        for num_layers in (1, 3):
            head = DINOHead(8, hidden_dim=5, bottleneck_dim=4, num_layers=num_layers, activation="tanh")
            head.build(x.shape)
            for variable in head.weights:  # away from the zero biases
                variable.assign(rng.normal(size=variable.shape))
            kernels = [layer.kernel.numpy() for layer in head.dense_layers]
            biases = [layer.bias.numpy() for layer in head.dense_layers]
            expected = numpy_head(x, kernels, biases, head.prototypes.numpy(), np.tanh)
            self.assertAllClose(head(x), expected, atol=1e-5, rtol=1e-5)
            self.assertLessEqual(float(np.max(np.abs(expected))), 1.0)
        # The prototypes' scale does not matter (weight normalisation with a fixed gain).
        before = head(x)
        head.prototypes.assign(head.prototypes * 7.0)
        self.assertAllClose(head(x), before, atol=1e-6)

    def test_float32_logits_under_mixed_precision(self):
        head = DINOHead(4, hidden_dim=4, bottleneck_dim=2, dtype="mixed_float16")
        logits = head(np.ones((2, 3), "float32"))
        self.assertEqual(keras.backend.standardize_dtype(logits.dtype), "float32")
        self.assertEqual(head.dense_layers[0].compute_dtype, "float16")

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(1)
        head = DINOHead(3, hidden_dim=3, bottleneck_dim=2, num_layers=2, dtype="float64")
        head.build((2, 3))
        for variable in head.weights:
            variable.assign(rng.normal(size=variable.shape))
        target = rng.normal(size=(2, 3))
        # Through the weight normalisation of the prototypes, the bottleneck's L2 norm and the input.
        v = head.prototypes

        def loss(x, prototypes):
            v.assign(prototypes)
            return tf.reduce_sum(tf.cast(head(x), "float64") * target)

        x = rng.normal(size=(2, 3))
        tensors = [tf.Variable(x)]
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(head(tensors[0]) * target)
        grad_x, grad_v = tape.gradient(value, [tensors[0], v.value])
        self.run_gradient_check(lambda a: loss(a, v.numpy()), [x], eps=1e-6, atol=1e-7)
        prototypes = v.numpy()
        numeric = np.zeros_like(prototypes)
        for index in np.ndindex(prototypes.shape):
            shifted = []
            for sign in (1, -1):
                moved = prototypes.copy()
                moved[index] += sign * 1e-6
                shifted.append(float(loss(x, moved)))
            numeric[index] = (shifted[0] - shifted[1]) / 2e-6
        v.assign(prototypes)
        self.assertAllClose(grad_v, numeric, atol=1e-7, rtol=1e-6)
        self.assertIsNotNone(grad_x)
        # Radial gradient is zero: scaling a prototype does not change the logits.
        self.assertAllClose(np.sum(grad_v.numpy() * prototypes, axis=0), np.zeros(3), atol=1e-10)

    def test_bad_arguments(self):
        for name in ("out_dim", "hidden_dim", "bottleneck_dim", "num_layers"):
            kwargs = {"out_dim": 4, name: 0}
            self.assertRaisesValueError([f"`{name}`", f"{name}=0"], DINOHead, **kwargs)
        self.assertRaisesValueError(["(batch, features)", "(2, 3, 4)"], DINOHead(4).build, (2, 3, 4))
