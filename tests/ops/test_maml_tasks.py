import keras
import numpy as np
import tensorflow as tf

from keras_transfer.ops import maml as maml_ops
from keras_transfer.ops import maml_tasks
from tests.test_case import TestCase


def tanh_net(seed=0, name_prefix=""):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(
                3, activation="tanh", dtype="float64", name=name_prefix + "hidden", bias_initializer="random_normal"
            ),
            keras.layers.Dense(1, dtype="float64", name=name_prefix + "head", bias_initializer="random_normal"),
        ]
    )


def np_tanh_net(p, x):
    return np.tanh(x @ p[0] + p[1]) @ p[2] + p[3]


class OneTaskTest(TestCase):
    def test_training_kwargs(self):
        class Named(keras.layers.Layer):
            def call(self, x, training=None):
                return x

        class CatchAll(keras.layers.Layer):
            def call(self, x, **kwargs):
                return x

        class Without(keras.layers.Layer):
            def call(self, x):
                return x

        self.assertEqual(maml_tasks.training_kwargs(Named(), True), {"training": True})
        self.assertEqual(maml_tasks.training_kwargs(CatchAll(), False), {"training": False})
        self.assertEqual(maml_tasks.training_kwargs(Without(), True), {})

    def test_with_fast_weights(self):
        values = [tf.constant(1.0), tf.constant(2.0), tf.constant(3.0)]
        out = maml_tasks.with_fast_weights(values, [0, 2], [tf.constant(10.0), tf.constant(30.0)])
        self.assertAllClose([float(v) for v in out], [10.0, 2.0, 30.0])
        self.assertAllClose([float(v) for v in values], [1.0, 2.0, 3.0])  # not modified

    def test_stateless_forward_matches_numpy_and_leaves_variables(self):
        net = tanh_net()
        theta = [v.numpy() for v in net.trainable_variables]
        x = np.random.default_rng(0).normal(size=(5, 2))
        # ANIL-style: only the head (indices 2, 3) is replaced.
        forward = maml_tasks.stateless_forward(net, [tf.constant(t) for t in theta], [], [2, 3], training=True)
        fast = [theta[2] + 0.5, theta[3] - 1.0]
        out = forward([tf.constant(f) for f in fast], tf.constant(x))
        self.assertAllClose(out, np_tanh_net([theta[0], theta[1]] + fast, x), atol=1e-12)
        for v, t in zip(net.trainable_variables, theta):
            self.assertAllClose(v.numpy(), t, atol=0)

    def test_stateless_forward_gradient_matches_finite_differences(self):
        net = tanh_net(seed=1)
        theta = [tf.constant(v.numpy()) for v in net.trainable_variables]
        x = tf.constant(np.random.default_rng(1).normal(size=(4, 2)))
        forward = maml_tasks.stateless_forward(net, theta, [], [0, 1])

        def loss(kernel, bias):
            return tf.reduce_sum(forward([kernel, bias], x) ** 2)

        self.run_gradient_check(loss, [theta[0].numpy(), theta[1].numpy()], eps=1e-6, atol=1e-7, rtol=1e-6)


class MetaBatchTest(TestCase):
    def test_tile_per_task(self):
        a, b = np.arange(6.0).reshape(2, 3), np.array(7.0)
        tiled = maml_tasks.tile_per_task([tf.constant(a), tf.constant(b)], 4)
        self.assertEqual(tuple(tiled[0].shape), (4, 2, 3))
        self.assertAllClose(tiled[0], np.broadcast_to(a, (4, 2, 3)), atol=0)
        self.assertAllClose(tiled[1], np.full((4,), 7.0), atol=0)

    def test_vectorized_forward_matches_each_task(self):
        net = tanh_net(seed=2)
        theta = [v.numpy() for v in net.trainable_variables]
        rng = np.random.default_rng(2)
        num_tasks, x = 3, rng.normal(size=(3, 5, 2))
        plan = maml_ops.dense_chain_plan(net, net.trainable_variables)
        forward = maml_tasks.vectorized_forward(plan, [tf.constant(t) for t in theta], [0, 1, 2, 3])
        per_task = [[t + rng.normal(size=t.shape) for t in theta] for _ in range(num_tasks)]
        fast = [tf.constant(np.stack([p[i] for p in per_task])) for i in range(4)]
        out = forward(fast, tf.constant(x))
        expected = np.stack([np_tanh_net(per_task[t], x[t]) for t in range(num_tasks)])
        self.assertAllClose(out, expected, atol=1e-12)

    def test_vectorized_forward_with_a_shared_layer(self):
        # ANIL on a chain: the hidden layer is shared (run on the merged tasks), the head per task.
        net = tanh_net(seed=3)
        theta = [v.numpy() for v in net.trainable_variables]
        head = net.get_layer("head").trainable_variables
        plan = maml_ops.dense_chain_plan(net, head)
        forward = maml_tasks.vectorized_forward(plan, [tf.constant(t) for t in theta], [2, 3])
        rng = np.random.default_rng(3)
        x = rng.normal(size=(2, 4, 2))
        kernels, biases = rng.normal(size=(2, 3, 1)), rng.normal(size=(2, 1))
        out = forward([tf.constant(kernels), tf.constant(biases)], tf.constant(x))
        expected = np.stack([np_tanh_net([theta[0], theta[1], kernels[t], biases[t]], x[t]) for t in range(2)])
        self.assertAllClose(out, expected, atol=1e-12)

    def test_task_summed_loss_value_and_per_task_gradients(self):
        rng = np.random.default_rng(4)
        y, w = rng.normal(size=(3, 4, 1)), rng.normal(size=(3, 1, 1))
        x = rng.normal(size=(3, 4, 1))

        def mse(y_true, y_pred):
            return tf.reduce_mean((y_true - y_pred) ** 2)

        loss = maml_tasks.task_summed_loss(mse, 3)
        per_task = [np.mean((y[t] - x[t] * w[t]) ** 2) for t in range(3)]
        self.assertAllClose(loss(tf.constant(y), tf.constant(x * w)), sum(per_task), atol=1e-12)
        # The gradient for task t's weight is the gradient of task t's own mean loss.
        with tf.GradientTape() as tape:
            wt = tf.constant(w)
            tape.watch(wt)
            value = loss(tf.constant(y), tf.constant(x) * wt)
        grad = tape.gradient(value, wt).numpy()
        for t in range(3):
            own = np.mean(-2.0 * (y[t] - x[t] * w[t]) * x[t])
            self.assertAllClose(grad[t, 0, 0], own, atol=1e-12)


class InnerLoopSetUpTest(TestCase):
    def test_adapted_weight_indices(self):
        net = tanh_net(seed=5)
        self.assertEqual(maml_tasks.adapted_weight_indices(net), [0, 1, 2, 3])
        self.assertEqual(maml_tasks.adapted_weight_indices(net, ["head"]), [2, 3])
        self.assertEqual(maml_tasks.adapted_weight_indices(net, ["head", "hidden"]), [0, 1, 2, 3])
        self.assertRaisesValueError(
            ["adapt_layers", "'nope'", "available"], maml_tasks.adapted_weight_indices, net, ["nope"]
        )
        self.assertRaisesValueError(["adapt_layers", "non-empty list"], maml_tasks.adapted_weight_indices, net, "head")

    def test_inner_rates_at_step(self):
        per_parameter = [tf.constant([[0.5, -0.2]]), tf.constant(2.0)]
        out = maml_tasks.inner_rates_at_step(per_parameter)
        self.assertAllClose(out[0], [[0.5, -0.2]])
        self.assertAllClose(out[1], 2.0)
        out = maml_tasks.inner_rates_at_step(per_parameter, bounds=(0.0, 1.0))
        self.assertAllClose(out[0], [[0.5, 0.0]])
        self.assertAllClose(out[1], 1.0)
        per_step = [tf.constant([0.1, 0.2, 0.3])]
        self.assertAllClose(maml_tasks.inner_rates_at_step(per_step, step=1)[0], 0.2)
        # Beyond the learned steps, the last step's rate is used.
        self.assertAllClose(maml_tasks.inner_rates_at_step(per_step, step=7)[0], 0.3)
        self.assertAllClose(maml_tasks.inner_rates_at_step(per_step, 0, (0.15, 0.25))[0], 0.15)


class BatchNormStatisticsTest(TestCase):
    def test_moving_statistic_to_batch(self):
        before, batch, m = np.array([1.0, -2.0]), np.array([0.3, 4.0]), 0.9
        after = m * before + (1 - m) * batch
        self.assertAllClose(maml_tasks.moving_statistic_to_batch(before, after, m), batch, atol=1e-12)

    def test_batch_norm_statistics_against_numpy(self):
        keras.utils.set_random_seed(6)
        inputs = keras.Input((2,), dtype="float64")
        h = keras.layers.Dense(3, dtype="float64", name="hidden")(inputs)
        h = keras.layers.BatchNormalization(dtype="float64", momentum=0.9, name="bn")(h)
        net = keras.Model(inputs, keras.layers.Dense(1, dtype="float64")(h))
        bn = net.get_layer("bn")
        bn.moving_mean.assign([5.0, -5.0, 1.0])  # not the batch statistics
        x = np.random.default_rng(6).normal(size=(8, 2))
        theta = [v.numpy() + 0.1 for v in net.trainable_variables]  # e.g. fast weights
        non_trainable = [v.value for v in net.non_trainable_variables]
        stats = maml_tasks.batch_norm_statistics(net, [tf.constant(t) for t in theta], non_trainable, tf.constant(x))
        by_path = {v.path: s for v, s in zip(net.non_trainable_variables, stats)}
        hidden = x @ theta[0] + theta[1]  # hidden kernel, bias are the first two weights
        self.assertAllClose(by_path[bn.moving_mean.path], hidden.mean(0), atol=1e-10)
        self.assertAllClose(by_path[bn.moving_variance.path], hidden.var(0), atol=1e-10)
        # With those statistics, inference mode gives the training-mode outputs on x.
        theta = [tf.constant(t) for t in theta]
        train_out, _ = net.stateless_call(theta, non_trainable, tf.constant(x), training=True)
        infer_out, _ = net.stateless_call(theta, stats, tf.constant(x), training=False)
        self.assertAllClose(infer_out, train_out, atol=1e-6)
        # The variables themselves are untouched.
        self.assertAllClose(bn.moving_mean.numpy(), [5.0, -5.0, 1.0], atol=0)


class PackageExportsTest(TestCase):
    def test_ops_exports_the_maml_maths_not_the_vectorisation_internals(self):
        import keras_transfer.ops as kt_ops

        for name in (
            "maml_inner_update",
            "maml_inner_loop",
            "exact_moments",
            "patch_batch_normalization",
            "stateless_forward",
            "batch_norm_statistics",
            "inner_rates_at_step",
            "adapted_weight_indices",
        ):
            self.assertTrue(callable(getattr(kt_ops, name, None)), name)
        for name in (
            "dense_chain_plan",
            "dense_chain_forward",
            "vectorized_forward",
            "tile_per_task",
            "task_summed_loss",
        ):
            self.assertFalse(hasattr(kt_ops, name), name)
