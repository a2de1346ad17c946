import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.datasets import sinusoid_tasks
from keras_transfer.models import MetaModel
from keras_transfer.ops import maml as maml_ops
from tests.models._terminate_on_nan import assert_terminates_on_nan
from tests.test_case import TestCase

ALPHA = 0.1


# ----------------------------------------------------------- NumPy reference
def np_forward(p, x):
    h = np.tanh(x @ p[0] + p[1])
    return h @ p[2] + p[3], h


def np_loss(p, x, y):
    pred, _ = np_forward(p, x)
    return np.mean((pred - y) ** 2)


def np_grad(p, x, y):
    """Hand-derived backprop of the MSE of a 1-hidden-layer tanh net."""
    pred, h = np_forward(p, x)
    d = 2.0 * (pred - y) / pred.size
    dh = d @ p[2].T
    dz = dh * (1.0 - h**2)
    return [x.T @ dz, dz.sum(0), h.T @ d, d.sum(0)]


def np_meta_objective(p, tasks, alpha=ALPHA, steps=1, rates=None):
    (sx, sy, qx), qy = tasks
    total = 0.0
    for t in range(len(sx)):
        phi = [a.copy() for a in p]
        for step in range(steps):
            g = np_grad(phi, sx[t], sy[t])
            lr = [alpha] * 4 if rates is None else rates
            phi = [a - r * b for a, r, b in zip(phi, lr, g)]
        total += np_loss(phi, qx[t], qy[t])
    return total / len(sx)


def finite_difference(fn, params, eps=1e-6):
    grads = []
    for i, p in enumerate(params):
        g = np.zeros_like(p)
        for j in range(p.size):
            plus = [a.copy() for a in params]
            minus = [a.copy() for a in params]
            plus[i].reshape(-1)[j] += eps
            minus[i].reshape(-1)[j] -= eps
            g.reshape(-1)[j] = (fn(plus) - fn(minus)) / (2 * eps)
        grads.append(g)
    return grads


def tiny_net(dtype="float64", seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((1,), dtype=dtype),
            keras.layers.Dense(3, activation="tanh", dtype=dtype, name="hidden", bias_initializer="random_normal"),
            keras.layers.Dense(1, dtype=dtype, name="head", bias_initializer="random_normal"),
        ]
    )


def tiny_functional_bn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((1,), dtype="float64")
    h = keras.layers.Dense(3, activation="tanh", dtype="float64", name="hidden", bias_initializer="random_normal")(
        inputs
    )
    h = keras.layers.BatchNormalization(dtype="float64", name="bn")(h)
    h = keras.layers.Activation("tanh", dtype="float64")(h)
    outputs = keras.layers.Dense(1, dtype="float64", name="head")(h)
    return keras.Model(inputs, outputs)


class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.hidden(x))


@keras.saving.register_keras_serializable(package="tests_meta_model")
class RegisteredSubclassedNet(SubclassedNet):
    pass


def f64_tasks(num_tasks=3, k=4, q=5, seed=1):
    (sx, sy, qx), qy = sinusoid_tasks(num_tasks, k, q, seed=seed)
    return (sx.astype("float64"), sy.astype("float64"), qx.astype("float64")), qy.astype("float64")


def meta_gradient(meta, tasks):
    (sx, sy, qx), qy = tasks
    with tf.GradientTape() as tape:
        pred = meta.adapt_and_predict(tf.constant(sx), tf.constant(sy), tf.constant(qx), training=True)
        loss = tf.reduce_mean(tf.square(tf.cast(pred, "float64") - qy))
    grads = tape.gradient(loss, meta.trainable_variables)
    by_id = {id(v): g for v, g in zip(meta.trainable_variables, grads)}
    # Model weights first (in model order), then the learned inner rates.
    ordered = meta.model.trainable_variables + meta.inner_rates
    return loss, [by_id[id(v)] for v in ordered]


class MetaModelGradientTest(TestCase):
    """Meta-gradients against a NumPy MAML (hand-derived inner gradient) + finite differences."""

    def setUp(self):
        super().setUp()
        keras.config.set_floatx("float64")  # the compiled loss computes in floatx

    def tearDown(self):
        keras.config.set_floatx("float32")
        super().tearDown()

    def check_against_numpy(self, vectorize, first_order=False, steps=1):
        net = tiny_net()
        meta = MetaModel(
            net, inner_steps=steps, inner_learning_rate=ALPHA, first_order=first_order, vectorize=vectorize
        )
        meta.compile(optimizer="sgd", loss="mse")
        self.assertEqual(meta.vectorized, vectorize)
        tasks = f64_tasks()
        theta = [v.numpy().copy() for v in net.trainable_variables]
        loss, grads = meta_gradient(meta, tasks)
        self.assertAllClose(loss, np_meta_objective(theta, tasks, steps=steps), atol=1e-10, rtol=1e-9)
        if first_order:
            # FOMAML: gradient of the query loss at phi with respect to phi.
            (sx, sy, qx), qy = tasks
            expected = [np.zeros_like(a) for a in theta]
            for t in range(len(sx)):
                phi = [a.copy() for a in theta]
                for _ in range(steps):
                    phi = [a - ALPHA * b for a, b in zip(phi, np_grad(phi, sx[t], sy[t]))]
                g = finite_difference(lambda p: np_loss(p, qx[t], qy[t]), phi)
                expected = [e + gi / len(sx) for e, gi in zip(expected, g)]
        else:
            expected = finite_difference(lambda p: np_meta_objective(p, tasks, steps=steps), theta)
        for g, e in zip(grads, expected):
            self.assertAllClose(g, e, atol=1e-7, rtol=1e-5)
        return grads

    def test_second_order_vectorized_matches_finite_differences(self):
        self.check_against_numpy(vectorize=True)

    def test_second_order_loop_matches_finite_differences(self):
        self.check_against_numpy(vectorize=False, steps=2)

    def test_first_order_matches_reference_and_differs_from_second(self):
        g1 = self.check_against_numpy(vectorize=True, first_order=True)
        g2 = self.check_against_numpy(vectorize=False, first_order=True)
        for a, b in zip(g1, g2):
            self.assertAllClose(a, b, atol=1e-10)

    def test_float64_python_rates_are_not_rounded_through_float32(self):
        # 0.3 in float32 is 0.30000001192: with it the adapted weights are off by ~1e-9.
        tasks = f64_tasks()
        (sx, sy, qx), qy = tasks
        for vectorize in (True, False):
            net = tiny_net()
            meta = MetaModel(net, inner_steps=2, inner_learning_rate=0.3, vectorize=vectorize)
            meta.compile(optimizer="sgd", loss="mse")
            theta = [v.numpy().copy() for v in net.trainable_variables]
            pred = meta.adapt_and_predict(sx, sy, qx).numpy()
            for t in range(len(sx)):
                phi = [a.copy() for a in theta]
                for _ in range(2):
                    phi = [a - 0.3 * b for a, b in zip(phi, np_grad(phi, sx[t], sy[t]))]
                self.assertAllClose(pred[t], np_forward(phi, qx[t])[0], atol=1e-12, rtol=0)
        # adapt(): the override rate, and float64 NumPy support sets kept in float64.
        adapted = meta.adapt(sx[0] + 1e-9, sy[0], steps=1, learning_rate=0.3)
        g = np_grad(theta, sx[0] + 1e-9, sy[0])
        for v, a, gi in zip(adapted.trainable_variables, theta, g):
            self.assertAllClose(v, a - 0.3 * gi, atol=1e-12, rtol=0)
        # Meta-SGD rates start exactly at the given rate in a float64 model.
        sgd = MetaModel(tiny_net(), inner_learning_rate=0.3, learn_inner_rates="per_parameter")
        for r in sgd.inner_rates:
            self.assertTrue(np.all(r.numpy() == 0.3), r.numpy())

    def test_meta_sgd_per_parameter_rates_gradient(self):
        net = tiny_net()
        meta = MetaModel(net, inner_learning_rate=ALPHA, learn_inner_rates="per_parameter")
        meta.compile(optimizer="sgd", loss="mse")
        self.assertLen(meta.inner_rates, 4)
        rng = np.random.default_rng(0)
        for r in meta.inner_rates:
            r.assign(rng.uniform(0.05, 0.2, size=r.shape))
        tasks = f64_tasks()
        theta = [v.numpy().copy() for v in net.trainable_variables]
        rates = [r.numpy().copy() for r in meta.inner_rates]
        _, grads = meta_gradient(meta, tasks)
        expected_rates = finite_difference(lambda rr: np_meta_objective(theta, tasks, rates=rr), rates)
        for g, e in zip(grads[4:], expected_rates):
            self.assertAllClose(g, e, atol=1e-7, rtol=1e-5)

    def test_inner_rate_bounds_clip_rates_in_the_inner_loop(self):
        net = tiny_net()
        meta = MetaModel(
            net, inner_learning_rate=ALPHA, learn_inner_rates="per_parameter", inner_rate_bounds=(0.0, 0.15)
        )
        meta.compile(optimizer="sgd", loss="mse")
        rng = np.random.default_rng(1)
        for r in meta.inner_rates:  # some negative, some above the bound, most inside
            r.assign(rng.uniform(-0.1, 0.25, size=r.shape))
        tasks = f64_tasks()
        theta = [v.numpy().copy() for v in net.trainable_variables]
        rates = [r.numpy().copy() for r in meta.inner_rates]
        clipped = [np.clip(r, 0.0, 0.15) for r in rates]
        loss, grads = meta_gradient(meta, tasks)
        self.assertAllClose(loss, np_meta_objective(theta, tasks, rates=clipped), atol=1e-10, rtol=1e-9)
        expected = finite_difference(lambda p: np_meta_objective(p, tasks, rates=clipped), theta)
        expected += finite_difference(
            lambda rr: np_meta_objective(theta, tasks, rates=[np.clip(r, 0.0, 0.15) for r in rr]), rates
        )
        for g, e in zip(grads, expected):
            self.assertAllClose(g, e, atol=1e-7, rtol=1e-5)
        # Rates outside the range get no gradient (the clip is flat there).
        outside = np.concatenate([((r < 0) | (r > 0.15)).ravel() for r in rates])
        self.assertTrue(outside.any())
        self.assertAllClose(np.concatenate([np.ravel(g) for g in grads[4:]])[outside], 0.0, atol=0)
        # adapt() uses the clipped rates too.
        (sx, sy, _), _ = tasks
        adapted = meta.adapt(sx[0], sy[0], steps=1)
        g = np_grad(theta, sx[0], sy[0])
        for v, a, r, gi in zip(adapted.trainable_variables, theta, clipped, g):
            self.assertAllClose(v, a - r * gi, atol=1e-10)

    def test_per_step_rates_and_anil(self):
        net = tiny_net()
        meta = MetaModel(
            net, inner_steps=2, inner_learning_rate=ALPHA, learn_inner_rates="per_step", adapt_layers=["head"]
        )
        meta.compile(optimizer="sgd", loss="mse")
        self.assertLen(meta.inner_rates, 2)  # head kernel and bias
        self.assertEqual(tuple(meta.inner_rates[0].shape), (2,))
        meta.inner_rates[0].assign([0.1, 0.05])
        meta.inner_rates[1].assign([0.2, 0.15])
        tasks = f64_tasks()
        theta = [v.numpy().copy() for v in net.trainable_variables]
        (sx, sy, qx), qy = tasks

        def objective(p, rates):
            total = 0.0
            for t in range(len(sx)):
                phi = [a.copy() for a in p]
                for step in range(2):
                    g = np_grad(phi, sx[t], sy[t])
                    phi = [phi[0], phi[1], phi[2] - rates[0][step] * g[2], phi[3] - rates[1][step] * g[3]]
                total += np_loss(phi, qx[t], qy[t])
            return total / len(sx)

        rates = [r.numpy().copy() for r in meta.inner_rates]
        loss, grads = meta_gradient(meta, tasks)
        self.assertAllClose(loss, objective(theta, rates), atol=1e-10, rtol=1e-9)
        expected = finite_difference(lambda p: objective(p, rates), theta)
        expected += finite_difference(lambda rr: objective(theta, rr), rates)
        for g, e in zip(grads, expected):
            self.assertAllClose(g, e, atol=1e-7, rtol=1e-5)

    def test_batch_norm_second_order_matches_finite_differences(self):
        tasks = f64_tasks(num_tasks=2, k=5, q=6)
        net = tiny_functional_bn()
        meta = MetaModel(net, inner_learning_rate=0.3)
        meta.compile(optimizer="sgd", loss="mse")
        self.assertFalse(meta.vectorized)
        theta = [v.numpy().copy() for v in net.trainable_variables]

        def objective(params):
            for v, p in zip(net.trainable_variables, params):
                v.assign(p)
            (sx, sy, qx), qy = tasks
            pred = meta.adapt_and_predict(sx, sy, qx, training=True)
            return float(np.mean((pred.numpy() - qy) ** 2))

        expected = finite_difference(objective, theta)
        for v, p in zip(net.trainable_variables, theta):
            v.assign(p)
        _, grads = meta_gradient(meta, tasks)
        for g, e in zip(grads, expected):
            self.assertAllClose(g, e, atol=1e-7, rtol=1e-5)

        # Keras's own moments (stop_gradient on the mean) give a wrong second-order term.
        bn = net.get_layer("bn")
        del bn.__dict__["_moments"]
        _, wrong = meta_gradient(meta, tasks)
        scale = max(np.max(np.abs(e)) for e in expected)
        errors = [np.max(np.abs(w.numpy() - e)) / scale for w, e in zip(wrong, expected)]
        self.assertGreater(max(errors), 0.01, f"relative errors {errors}")
        maml_ops.patch_batch_normalization(net)


class MetaModelTrainingTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tasks = sinusoid_tasks(8, 5, 6, seed=3)

    def build_mlp(self, jit_compile=False, **kwargs):
        # XLA compilation costs seconds per traced function; one test keeps the default ("auto").
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [keras.Input((1,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, name="head")]
        )
        meta = MetaModel(net, **kwargs)
        meta.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", metrics=["mae"], jit_compile=jit_compile)
        return meta

    def test_vectorized_equals_loop_path(self):
        (sx, sy, qx), qy = self.tasks
        a = self.build_mlp(inner_steps=2, vectorize=True)
        b = self.build_mlp(inner_steps=2, vectorize=False)
        self.assertTrue(a.vectorized)
        self.assertFalse(b.vectorized)
        self.assertAllClose(a.adapt_and_predict(sx, sy, qx), b.adapt_and_predict(sx, sy, qx), atol=1e-5, rtol=1e-5)

    def test_fit_evaluate_predict_and_metrics(self):
        meta = self.build_mlp(inner_steps=1, inner_learning_rate=0.01)
        x, y = self.tasks
        history = self.run_fit_test(meta, x, y, batch_size=4, steps=2)
        self.assertEqual(sorted(history.history), ["loss", "mae"])
        results = meta.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        self.assertEqual(sorted(results), ["loss", "mae"])
        # The reported loss is the query MSE after adaptation (NumPy check).
        pred = meta.predict({"support_x": x[0], "support_y": x[1], "query_x": x[2]}, batch_size=8, verbose=0)
        self.assertEqual(pred.shape, (8, 6, 1))
        self.assertAllClose(results["loss"], np.mean((pred - y) ** 2), rtol=1e-4)
        # A plain tensor goes through the meta-learned initialisation.
        self.assertEqual(meta.predict(x[2][0], verbose=0).shape, (6, 1))

    @pytest.mark.compiled
    def test_meta_training_reduces_query_loss(self):
        from keras_transfer.datasets import sinusoid_task_dataset

        meta = self.build_mlp(inner_steps=1, inner_learning_rate=0.01, jit_compile="auto")
        self.assertTrue(meta.jit_compile)  # "auto" turns XLA on for the vectorised path
        x, y = sinusoid_tasks(100, 10, 10, seed=7)
        before = meta.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)["loss"]
        meta.fit(sinusoid_task_dataset(10, 10, 10, seed=1), steps_per_epoch=150, epochs=1, verbose=0)
        after = meta.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)["loss"]
        self.assertLess(after, 0.8 * before)

    def test_steps_per_batch_equals_separate_steps(self):
        import tensorflow as tf

        x, y = sinusoid_tasks(12, 5, 6, seed=4)
        one = self.build_mlp(inner_steps=1)
        one.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 3 optimizer steps
        stacked = self.build_mlp(inner_steps=1, steps_per_batch=3)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).batch(3, drop_remainder=True)
        stacked.fit(data, epochs=1, verbose=0)
        self.assertEqual(int(stacked.optimizer.iterations.numpy()), 3)
        for a, b in zip(one.trainable_variables, stacked.trainable_variables):
            self.assertAllClose(b, a, atol=1e-6)
        self.assertRaisesValueError("steps_per_batch", MetaModel, one.model, steps_per_batch=0)

    @pytest.mark.compiled
    def test_anil_on_conv_backbone_vectorized_equals_loop(self):
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [
                keras.Input((4, 4, 1)),
                keras.layers.Conv2D(3, 3, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(3, name="head"),
            ]
        )
        rng = np.random.default_rng(0)
        sx, qx = rng.normal(size=(2, 6, 4, 4, 1)).astype("float32"), rng.normal(size=(2, 5, 4, 4, 1)).astype("float32")
        sy = np.tile(np.arange(3).repeat(2), (2, 1))
        qy = rng.integers(0, 3, size=(2, 5))
        outs = []
        for vectorize in (True, False):
            meta = MetaModel(net, inner_steps=2, inner_learning_rate=0.5, adapt_layers=["head"], vectorize=vectorize)
            meta.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            self.assertEqual(meta.vectorized, vectorize)
            if not tf.config.list_physical_devices("GPU"):
                self.assertFalse(meta.jit_compile)  # no automatic XLA for conv layers on CPU
            with tf.GradientTape() as tape:
                pred = meta.adapt_and_predict(sx, sy, qx, training=True)
                loss = meta.compute_loss(y=qy.reshape(-1), y_pred=tf.reshape(pred, (-1, 3)))
            outs.append((pred, tape.gradient(loss, net.trainable_variables)))
        self.assertAllClose(outs[0][0], outs[1][0], atol=1e-5)
        for a, b in zip(outs[0][1], outs[1][1]):
            self.assertAllClose(a, b, atol=1e-5)

    def test_subclassed_model_fit_and_adapt(self):
        keras.utils.set_random_seed(0)
        net = SubclassedNet()
        net(np.zeros((1, 1), "float32"))
        meta = MetaModel(net, inner_steps=1, inner_learning_rate=0.05)
        meta.compile(optimizer="adam", loss="mse")
        self.assertFalse(meta.vectorized)
        x, y = self.tasks
        self.run_fit_test(meta, x, y, batch_size=4, steps=2)

    def test_export_straight_after_fit_and_reload(self):
        x, y = self.tasks
        self.run_fit_then_export_test(lambda: self.build_mlp(inner_steps=1), x, x[2][0], fit_y=y, batch_size=4)

        # A subclassed wrapped model: fit never calls it (stateless_call only), a reloaded
        # one is built from its config; export takes the shape it was built with.
        def build_subclassed():
            keras.utils.set_random_seed(0)
            net = RegisteredSubclassedNet()
            net(np.zeros((1, 1), "float32"))
            meta = MetaModel(net, inner_steps=1, inner_learning_rate=0.05)
            meta.compile(optimizer="adam", loss="mse")
            return meta

        self.run_fit_then_export_test(build_subclassed, x, x[2][0], fit_y=y, batch_size=4)

    def test_terminate_on_nan_and_no_finite_metric_with_nan_weights(self):
        (sx, sy, qx), qy = self.tasks
        sx = sx.copy()
        sx[0, 0, 0] = np.nan
        meta = self.build_mlp(inner_steps=1)
        assert_terminates_on_nan(self, meta, (sx, sy, qx), qy, stop_batch=0, batch_size=4)
        # Divergence, with an accuracy metric (the accuracy of NaN logits would be finite).
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(4), keras.layers.Dense(3)]
        )  # weights 1e30 in two layers overflow
        rng = np.random.default_rng(0)
        sx = rng.normal(size=(16, 6, 4, 4, 1)).astype("float32")
        sy = np.tile(np.arange(3).repeat(2), (16, 1))
        qx = rng.normal(size=(16, 5, 4, 4, 1)).astype("float32")
        qy = rng.integers(0, 3, size=(16, 5))
        meta = MetaModel(net, inner_steps=1, inner_learning_rate=0.1)
        meta.compile(
            optimizer=keras.optimizers.SGD(1e30),
            metrics=["accuracy"],
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=False,
        )
        assert_terminates_on_nan(self, meta, (sx, sy, qx), qy, batch_size=4)

    def test_adapt_returns_plain_model_that_saves_and_exports(self):
        meta = self.build_mlp(inner_steps=1, inner_learning_rate=0.05)
        (sx, sy, qx), qy = self.tasks
        adapted = meta.adapt(sx[0], sy[0], steps=3)
        self.assertIsInstance(adapted, keras.Sequential)
        # Reference: three plain SGD steps with the same loss, by hand with GradientTape.
        weights = [tf.Variable(v.numpy()) for v in meta.model.trainable_variables]
        for _ in range(3):
            with tf.GradientTape() as tape:
                h = tf.nn.relu(sx[0] @ weights[0] + weights[1])
                loss = tf.reduce_mean(tf.square(h @ weights[2] + weights[3] - sy[0]))
            for w, g in zip(weights, tape.gradient(loss, weights)):
                w.assign_sub(0.05 * g)
        for w, v in zip(weights, adapted.trainable_variables):
            self.assertAllClose(v, w, atol=1e-6)
        # The meta-parameters are untouched.
        self.assertNotAllClose(meta.model.trainable_variables[0], adapted.trainable_variables[0])
        self.run_serialization_test(adapted, qx[0])
        self.run_export_test(adapted, qx[0])

    def test_adapt_batch_norm_uses_support_statistics(self):
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [keras.Input((1,)), keras.layers.Dense(4), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
        )
        meta = MetaModel(net, inner_learning_rate=0.01)
        meta.compile(optimizer="adam", loss="mse")
        (sx, sy, qx), qy = self.tasks
        adapted = meta.adapt(sx[0], sy[0], steps=1)
        hidden = sx[0] @ adapted.layers[0].kernel.numpy() + adapted.layers[0].bias.numpy()
        bn = adapted.layers[1]
        self.assertAllClose(bn.moving_mean, hidden.mean(0), atol=1e-5)
        self.assertAllClose(bn.moving_variance, hidden.var(0), atol=1e-5)

    def test_save_and_reload_with_optimizer_state(self):
        meta = self.build_mlp(
            inner_steps=1, learn_inner_rates="per_parameter", adapt_layers=["head"], inner_rate_bounds=(0.0, 1.0)
        )
        x, y = self.tasks
        meta.fit(x, y, batch_size=4, epochs=1, verbose=0)
        reloaded = self.run_serialization_test(meta, x[2][0])
        self.assertEqual(reloaded.learn_inner_rates, "per_parameter")
        self.assertEqual(reloaded.adapt_layers, ["head"])
        self.assertEqual(reloaded.inner_rate_bounds, (0.0, 1.0))
        for a, b in zip(meta.optimizer.variables, reloaded.optimizer.variables):
            self.assertAllClose(b, a, atol=0, rtol=0)
        self.assertAllClose(
            reloaded.evaluate(x, y, batch_size=8, verbose=0), meta.evaluate(x, y, batch_size=8, verbose=0), rtol=1e-5
        )
        # Training continues from the restored state.
        reloaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
        # export() serves the meta-learned initialisation, as predict on plain tensors does.
        self.run_export_test(reloaded, x[2][0])

    def test_mixed_precision_step(self):
        x, y = self.tasks
        self.run_mixed_precision_test(lambda: self.build_mlp(inner_steps=1), x, y, batch_size=4)

        def conv_bn():
            keras.utils.set_random_seed(0)
            net = keras.Sequential(
                [
                    keras.Input((4, 4, 1)),
                    keras.layers.Conv2D(2, 3),
                    keras.layers.BatchNormalization(),
                    keras.layers.ReLU(),
                    keras.layers.Flatten(),
                    keras.layers.Dense(3, dtype="float32"),
                ]
            )
            meta = MetaModel(net, inner_learning_rate=0.1)
            meta.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return meta

        rng = np.random.default_rng(0)
        sx = rng.normal(size=(2, 6, 4, 4, 1)).astype("float32")
        sy = np.tile(np.arange(3).repeat(2), (2, 1))
        self.run_mixed_precision_test(conv_bn, (sx, sy, sx), sy, batch_size=2)


class MetaModelErrorTest(TestCase):
    def net(self):
        return keras.Sequential([keras.Input((1,)), keras.layers.Dense(2), keras.layers.Dense(1, name="head")])

    def test_bad_arguments(self):
        self.assertRaisesValueError(["inner_steps", "Received: inner_steps=0"], MetaModel, self.net(), inner_steps=0)
        self.assertRaisesValueError("inner_learning_rate", MetaModel, self.net(), inner_learning_rate=-1.0)
        self.assertRaisesValueError("learn_inner_rates", MetaModel, self.net(), learn_inner_rates="global")
        self.assertRaisesValueError(["adapt_layers", "'nope'"], MetaModel, self.net(), adapt_layers=["nope"])
        self.assertRaisesValueError("first_order", MetaModel, self.net(), first_order="yes")
        self.assertRaisesValueError("vectorize", MetaModel, self.net(), vectorize=None)
        self.assertRaisesValueError(
            ["inner_rate_bounds", "low < high", "(1.0, 0.0)"],
            MetaModel,
            self.net(),
            learn_inner_rates="per_parameter",
            inner_rate_bounds=(1.0, 0.0),
        )
        self.assertRaisesValueError(
            "inner_rate_bounds", MetaModel, self.net(), learn_inner_rates="per_parameter", inner_rate_bounds=0.5
        )
        self.assertRaisesValueError(
            "inner_rate_bounds", MetaModel, self.net(), learn_inner_rates="per_step", inner_rate_bounds=("a", 1)
        )
        self.assertRaisesValueError(
            ["only applies to learned inner rates", "learn_inner_rates=None"],
            MetaModel,
            self.net(),
            inner_rate_bounds=(0.0, 1.0),
        )
        self.assertRaisesValueError("must be a keras.Model", MetaModel, keras.layers.Dense(2))

    def test_model_without_trainable_weights(self):
        net = self.net()
        net.trainable = False
        self.assertRaisesValueError(["trainable weights", "0 trainable"], MetaModel, net)
        self.assertRaisesValueError("must be built", MetaModel, keras.Sequential([keras.layers.Dense(1)]))
        relu = keras.Sequential([keras.Input((1,)), keras.layers.ReLU(name="relu"), keras.layers.Dense(1)])
        self.assertRaisesValueError("with trainable weights", MetaModel, relu, adapt_layers=["relu"])

    def test_bad_task_data(self):
        meta = MetaModel(self.net())
        meta.compile(optimizer="sgd", loss="mse")
        sx, sy = np.zeros((2, 3, 1), "float32"), np.zeros((2, 3, 1), "float32")
        self.assertRaisesValueError(
            ["same feature shape", "support_x.shape=(2, 3, 1)"],
            meta.adapt_and_predict,
            sx,
            sy,
            np.zeros((2, 3, 2), "float32"),
        )
        self.assertRaisesValueError("rank >= 3", meta.adapt_and_predict, sx[0], sy[0], sx[0])
        self.assertRaisesValueError("support_y", meta.adapt_and_predict, sx, sy[:, :2], sx)
        self.assertRaisesValueError(
            "must be a meta-batch of tasks", meta.fit, np.zeros((2, 1)), np.zeros((2, 1)), verbose=0
        )
        self.assertRaisesValueError("query targets", meta.fit, (sx, sy, sx), np.zeros((2, 4, 1)), verbose=0)
        self.assertRaisesValueError(["steps", "Received: steps=0"], meta.adapt, sx[0], sy[0], steps=0)
        self.assertRaisesValueError("same first axis", meta.adapt, sx[0], sy[0, :2])
        nan = sx[0].copy()
        nan[0, 0] = np.nan
        self.assertRaisesValueError(["support_x", "finite"], meta.adapt, nan, sy[0])

    def test_uncompiled_inner_loss(self):
        meta = MetaModel(self.net())
        sx = np.zeros((1, 3, 1), "float32")
        self.assertRaisesValueError("compiled with a `loss`", meta.adapt_and_predict, sx, sx, sx)

    def test_inner_loss_from_the_wrapped_compiled_model(self):
        # Regression test: the benchmarks' and demo's baselines wrap an already compiled
        # (and fitted) model in a MetaModel that is not compiled itself; before the fallback
        # to the wrapped model's loss, adapt_and_predict raised "must be compiled with a `loss`".
        (sx, sy, qx), qy = sinusoid_tasks(2, 4, 3, seed=0)
        net = self.net()
        net.compile(optimizer="sgd", loss="mse")
        net.fit(sx[0], sy[0], epochs=1, verbose=0)
        theta = [v.numpy() for v in net.trainable_variables]
        wrapped = MetaModel(net, inner_learning_rate=0.1)
        out = wrapped.adapt_and_predict(sx, sy, qx, steps=2).numpy()
        # Reference: two SGD steps (alpha=0.1) on the MSE of the linear net (x W1 + b1) W2 + b2.
        for t in range(2):
            w1, b1, w2, b2 = [a.astype("float64") for a in theta]
            for _ in range(2):
                h = sx[t] @ w1 + b1
                d = 2.0 * (h @ w2 + b2 - sy[t]) / sy[t].size
                dh = d @ w2.T
                w1, b1, w2, b2 = (
                    w1 - 0.1 * sx[t].T @ dh,
                    b1 - 0.1 * dh.sum(0),
                    w2 - 0.1 * h.T @ d,
                    b2 - 0.1 * d.sum(0),
                )
            self.assertAllClose(out[t], (qx[t] @ w1 + b1) @ w2 + b2, atol=1e-5)
