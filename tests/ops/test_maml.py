import keras
import numpy as np
import tensorflow as tf

from keras_transfer.ops import maml as maml_ops
from tests.test_case import TestCase


class MamlOpsTest(TestCase):
    def test_exact_moments_values_and_second_order(self):
        x = np.random.default_rng(0).normal(size=(5, 3))
        mean, var = maml_ops.exact_moments(tf.constant(x), axes=[0])
        self.assertAllClose(mean, x.mean(0), atol=1e-12)
        self.assertAllClose(var, x.var(0), atol=1e-12)

        def grad_norm_of_normalised(t):
            # A first-order gradient inside: its derivative needs the second-order term.
            with tf.GradientTape() as inner:
                inner.watch(t)
                m, v = maml_ops.exact_moments(t, axes=[0])
                out = tf.reduce_sum(tf.sin((t - m) / tf.sqrt(v + 1e-3)) * t)
            g = inner.gradient(out, t)
            return tf.reduce_sum(g**2)

        self.run_gradient_check(grad_norm_of_normalised, [x], eps=1e-6, atol=1e-6, rtol=1e-5)

    def test_tf_moments_second_order_is_not_exact(self):
        # The reason exact_moments exists: tf.nn.moments stops the gradient through the mean in the variance.
        x = tf.constant(np.random.default_rng(1).normal(size=(6, 2)))

        def second(moments):
            with tf.GradientTape() as outer:
                outer.watch(x)
                with tf.GradientTape() as inner:
                    inner.watch(x)
                    m, v = moments(x)
                    out = tf.reduce_sum(tf.sin((x - m) / tf.sqrt(v + 1e-3)) * x)  # not shift-invariant
                g = tf.reduce_sum(inner.gradient(out, x) ** 2)
            return outer.gradient(g, x).numpy()

        exact = second(lambda t: maml_ops.exact_moments(t, [0]))
        tf_version = second(lambda t: tf.nn.moments(t, [0]))
        self.assertNotAllClose(tf_version, exact, atol=1e-6, rtol=1e-3)

    def test_inner_update_and_first_order(self):
        p = [tf.constant([1.0, 2.0]), tf.constant(3.0)]
        g = [tf.constant([0.5, -1.0]), None]
        out = maml_ops.maml_inner_update(p, g, [0.1, 0.2])
        self.assertAllClose(out[0], [0.95, 2.1])
        self.assertAllClose(out[1], 3.0)
        theta = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            t = tf.convert_to_tensor(theta)
            phi = maml_ops.maml_inner_loop(
                lambda w, x: w[0] * x,
                lambda y, p: (p - y) ** 2,
                [t],
                tf.constant(1.0),
                tf.constant(0.0),
                steps=1,
                learning_rates=0.1,
                first_order=True,
            )
            loss = phi[0] ** 2
        # phi = theta - 0.1 * 2 theta = 0.8 theta; first-order: dL/dtheta = 2 phi = 3.2.
        self.assertAllClose(tape.gradient(loss, theta), 3.2, atol=1e-6)

    def test_float64_update_keeps_python_float_rates_exact(self):
        # tf.cast(0.3, float64) would go through float32: 0.30000001192 (error ~1e-8 here).
        rng = np.random.default_rng(2)
        p, g = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
        for rate in (0.3, [0.3], np.float64(0.3)):
            out = maml_ops.maml_inner_update([tf.constant(p)], [tf.constant(g)], rate)
            self.assertEqual(out[0].dtype, tf.float64)
            self.assertAllClose(out[0], p - 0.3 * g, atol=1e-12, rtol=0)
        # A tensor rate is cast to the parameter's dtype; float32 parameters stay float32.
        out = maml_ops.maml_inner_update([tf.constant(p, tf.float32)], [tf.constant(g)], 0.3)
        self.assertEqual(out[0].dtype, tf.float32)
        self.assertAllClose(out[0], p - 0.3 * g, atol=1e-6)

    def test_dense_chain_plan_qualification(self):
        dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU(), keras.layers.Dense(2)])
        self.assertIsNotNone(maml_ops.dense_chain_plan(dense, dense.trainable_variables))
        bn = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization()])
        self.assertIsNone(maml_ops.dense_chain_plan(bn, bn.trainable_variables))
        conv = keras.Sequential(
            [
                keras.Input((4, 4, 1)),
                keras.layers.Conv2D(2, 3),
                keras.layers.Flatten(),
                keras.layers.Dense(2, name="head"),
            ]
        )
        self.assertIsNone(maml_ops.dense_chain_plan(conv, conv.trainable_variables))
        # ANIL on a conv backbone: only the head is per task, the backbone runs shared.
        head = conv.get_layer("head").trainable_variables
        self.assertIsNotNone(maml_ops.dense_chain_plan(conv, head))
        inputs = keras.Input((3,))
        branch = keras.layers.Dense(2)(inputs)
        skip = keras.Model(inputs, keras.layers.Add()([branch, keras.layers.Dense(2)(inputs)]))
        self.assertIsNone(maml_ops.dense_chain_plan(skip, skip.trainable_variables))
