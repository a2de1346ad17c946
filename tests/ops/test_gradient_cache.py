import keras
import numpy as np
import tensorflow as tf

from keras_transfer.ops import gradient_cache
from tests.test_case import TestCase


def numpy_pair_loss(z, scale):
    """A contrastive-style loss that couples every row: log-sum-exp of scaled similarities."""
    s = scale * z @ z.T
    return float(np.sum(np.log(np.sum(np.exp(s - s.max(axis=1, keepdims=True)), axis=1)) + s.max(axis=1)))


def pair_loss(z, scale):
    return tf.reduce_sum(tf.reduce_logsumexp(scale * tf.matmul(z, z, transpose_b=True), axis=1))


class GradientCacheTest(TestCase):
    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.x = np.random.default_rng(0).normal(size=(10, 5)).astype("float32")

    def test_equals_the_unchunked_gradient_and_numpy_loss(self):
        net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(3)])
        scale = keras.Variable(2.0, name="scale")  # read by the loss directly, as CLIP's logit scale
        variables = net.trainable_variables + [scale]
        with tf.GradientTape() as tape:
            reference = pair_loss(net(self.x), scale)
        expected = tape.gradient(reference, variables)
        for chunk_size in (1, 3, 4, 10, 64):
            # As in a train_step: the variables are read inside the tf.function, not passed to it.
            step = tf.function(
                lambda: gradient_cache(
                    net, lambda z: (pair_loss(z, scale), tf.shape(z)[0]), self.x, chunk_size, variables
                )
            )
            loss, aux, grads = step()
            self.assertAllClose(loss, numpy_pair_loss(net(self.x).numpy(), 2.0), rtol=1e-5)
            self.assertEqual(int(aux), 10)
            for g, e in zip(grads, expected):
                self.assertAllClose(g, e, atol=1e-5, rtol=1e-5)
        self.assertGreater(abs(float(expected[-1])), 1e-3)  # the direct gradient is not vacuous

    def test_dropout_masks_reused_and_state_updated_once(self):
        net = keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(3),
            ]
        )
        state = net.non_trainable_variables
        start = [v.numpy().copy() for v in state]

        def embed(rows):
            return net(rows, training=True)

        loss, _, grads = gradient_cache(
            embed, lambda z: (pair_loss(z, 1.0), None), self.x, 4, net.trainable_variables, state
        )
        after = [v.numpy().copy() for v in state]
        # Reference: the same chunks in the same order from the same seed state, one tape.
        for v, value in zip(state, start):
            v.assign(value)
        with tf.GradientTape() as tape:
            z = tf.concat([embed(self.x[i : i + 4]) for i in range(0, 10, 4)], axis=0)
            reference = pair_loss(z, 1.0)
        expected = tape.gradient(reference, net.trainable_variables)
        self.assertAllClose(loss, reference, rtol=1e-6)
        for g, e in zip(grads, expected):
            self.assertAllClose(g, e, atol=1e-5, rtol=1e-5)
        # The seed state advanced as one pass over the chunks would advance it, not twice.
        for a, b in zip(after, [v.numpy() for v in state]):
            self.assertAllClose(a, b)
        self.assertNotAllClose(after[0], start[0])

    def test_tuple_inputs(self):
        # Two streams embedded side by side (CLIP's images and texts).
        a, b = keras.layers.Dense(3), keras.layers.Dense(3)
        x2 = self.x[:, ::-1].copy()

        def embed(rows):
            return tf.concat([a(rows[0]), b(rows[1])], axis=1)

        def loss_fn(z):
            return tf.reduce_sum(tf.reduce_logsumexp(tf.matmul(z[:, :3], z[:, 3:], transpose_b=True), axis=1)), None

        embed((self.x, x2))
        variables = a.trainable_variables + b.trainable_variables
        loss, _, grads = gradient_cache(embed, loss_fn, (self.x, x2), 3, variables)
        with tf.GradientTape() as tape:
            reference, _ = loss_fn(embed((self.x, x2)))
        for g, e in zip(grads, tape.gradient(reference, variables)):
            self.assertAllClose(g, e, atol=1e-5, rtol=1e-5)

    def test_bad_chunk_size(self):
        dense = keras.layers.Dense(2)
        for bad in (0, -1, 2.5):
            self.assertRaisesValueError(
                ["`chunk_size`", f"chunk_size={bad}"], gradient_cache, dense, None, self.x, bad, []
            )
