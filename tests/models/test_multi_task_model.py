import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.datasets import load_digits
from keras_transfer.datasets import multi_task_dataset
from keras_transfer.models import MultiTaskModel
from tests.models._terminate_on_nan import assert_terminates_on_nan
from tests.test_case import TestCase

# Tasks in a deliberately non-alphabetical order: the task ids follow the dict order.
CLASSES = {"gamma": 3, "alpha": 2, "beta": 4}


def trunk(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")], name="trunk")


def batch(task=(0, 0, 0, 1, 1, 1, 1, 0), seed=0):
    """A fixed mixed batch; labels drawn in each example's own task's classes."""
    rng = np.random.default_rng(seed)
    task = np.asarray(task, "int64")
    x = rng.normal(size=(len(task), 4)).astype("float32")
    classes = np.array(list(CLASSES.values()))[task]
    y = rng.integers(0, classes).astype("int64")
    return x, task, y


def one_batch(x, task, y, sample_weight=None):
    element = (
        ({"inputs": x, "task": task}, y) if sample_weight is None else ({"inputs": x, "task": task}, y, sample_weight)
    )
    return tf.data.Dataset.from_tensors(element)


def numpy_probabilities(model, x):
    """float64 forward pass from the weights: tanh trunk, softmax heads."""
    kernel, bias = (w.numpy().astype("float64") for w in model.trunk.weights)
    features = np.tanh(x.astype("float64") @ kernel + bias)
    out = {}
    for name, head in model.heads.items():
        w, b = (v.numpy().astype("float64") for v in head.weights)
        z = features @ w + b
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        out[name] = z / z.sum(axis=-1, keepdims=True)
    return out


def numpy_task_terms(model, x, task, y, sample_weight=None):
    """Per task: mean cross-entropy of its own examples (NaN if absent) and accuracy."""
    probs = numpy_probabilities(model, x)
    weight = np.ones(len(x)) if sample_weight is None else sample_weight.astype("float64")
    losses, accuracies = [], []
    for index, name in enumerate(model.task_names):
        rows = task == index
        p = np.clip(probs[name][rows, y[rows]], 1e-7, 1 - 1e-7)
        losses.append(np.sum(-np.log(p) * weight[rows]) / rows.sum() if rows.any() else np.nan)
        hits = probs[name][rows].argmax(-1) == y[rows]
        accuracies.append(np.sum(hits * weight[rows]) / weight[rows].sum() if rows.any() else 0.0)
    return np.array(losses), np.array(accuracies)


class MultiTaskModelTest(TestCase):
    def test_loss_and_logs_match_numpy_with_fixed_weights(self):
        weights = {"gamma": 0.5, "alpha": 2.0, "beta": 3.0}
        model = MultiTaskModel(trunk(), CLASSES, loss_weights=weights)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        x, task, y = batch()  # "beta" (id 2) absent
        sample_weight = np.linspace(0.5, 1.5, len(x)).astype("float32")
        for sw in (None, sample_weight):
            losses, accuracies = numpy_task_terms(model, x, task, y, sw)
            expected = 0.5 * losses[0] + 2.0 * losses[1]  # Σ_i w_i L_i over the tasks present
            logs = model.fit(one_batch(x, task, y, sw), epochs=1, verbose=0).history
            self.assertAllClose(logs["loss"][0], expected, rtol=1e-5)
            for index, name in enumerate(["gamma", "alpha"]):
                self.assertAllClose(logs[f"{name}_loss"][0], losses[index], rtol=1e-5)
                self.assertAllClose(logs[f"{name}_accuracy"][0], accuracies[index], rtol=1e-6)
            self.assertEqual(logs["beta_loss"][0], 0.0)
        # "uniform" is the plain sum of the task losses.
        uniform = MultiTaskModel(trunk(), CLASSES)
        uniform.compile(optimizer="sgd")
        x, task, y = batch(task=(0, 1, 2, 2, 1, 0))
        losses, _ = numpy_task_terms(uniform, x, task, y)
        self.assertAllClose(uniform.evaluate(one_batch(x, task, y), verbose=0)[0], losses.sum(), rtol=1e-5)

    def test_uncertainty_loss_matches_numpy_and_step_on_log_variances(self):
        model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
        lr = 0.1
        model.compile(optimizer=keras.optimizers.SGD(lr))
        s = np.array([0.3, -0.7, 1.1], "float32")
        model.log_variances.assign(s)
        x, task, y = batch()  # "beta" absent: its term and its s_i stay out
        losses, _ = numpy_task_terms(model, x, task, y)
        present = np.array([True, True, False])
        s64 = s.astype("float64")
        # Kendall et al. eq. (10), classification: L / σ² + log σ with s = log σ².
        expected = np.sum((np.exp(-s64) * losses + 0.5 * s64)[present])
        logs = model.fit(one_batch(x, task, y), epochs=1, verbose=0).history
        self.assertAllClose(logs["loss"][0], expected, rtol=1e-5)
        # One SGD step: ∂/∂s_i = -exp(-s_i) L_i + 1/2 for present tasks, nothing for "beta".
        grad = np.where(present, -np.exp(-s64) * np.nan_to_num(losses) + 0.5, 0.0)
        self.assertAllClose(model.log_variances.numpy(), s64 - lr * grad, atol=1e-6)
        self.assertEqual(model.log_variances.numpy()[2], s[2])

    def test_uncertainty_gradient_matches_finite_differences(self):
        model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
        present = tf.constant([True, False, True])
        self.run_gradient_check(
            lambda losses, s: model.total_loss(losses, present, log_variances=s),
            [np.array([0.8, 1.7, 0.4]), np.array([0.2, -0.5, 1.3])],
            eps=1e-6,
            atol=1e-7,
        )

    def test_absent_task_leaves_its_head_and_log_variance_unchanged(self):
        model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        model.fit(one_batch(*batch(task=(0, 1, 2, 2, 1, 0))), epochs=1, verbose=0)  # Adam moments for all
        before = {name: [w.numpy() for w in head.weights] for name, head in model.heads.items()}
        s_before = model.log_variances.numpy()
        trunk_before = [w.numpy() for w in model.trunk.weights]
        model.fit(one_batch(*batch(task=(0, 0, 1, 1))), epochs=1, verbose=0)  # no "beta"
        for after, old in zip(model.heads["beta"].weights, before["beta"]):
            self.assertAllClose(after.numpy(), old, atol=0, rtol=0)
        self.assertEqual(model.log_variances.numpy()[2], s_before[2])
        for name in ("gamma", "alpha"):
            self.assertNotAllClose(model.heads[name].weights[0].numpy(), before[name][0])
        self.assertNotAllClose(model.log_variances.numpy()[:2], s_before[:2])
        self.assertNotAllClose(model.trunk.weights[0].numpy(), trunk_before[0])

    @pytest.mark.compiled
    def test_two_digit_tasks_both_improve(self):
        (x, y), (xt, yt) = load_digits()
        x, xt = x.reshape(len(x), 64) / 16.0, xt.reshape(len(xt), 64) / 16.0
        low, high = y < 5, yt < 5
        tasks = {"low": (x[low], y[low]), "high": (x[~low], y[~low] - 5)}
        keras.utils.set_random_seed(0)
        body = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu")])
        model = MultiTaskModel(body, {"low": 5, "high": 5})
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        test = {"inputs": xt, "task": (~high).astype("int64")}
        labels = np.where(high, yt, yt - 5)
        before = model.evaluate(test, labels, verbose=0, return_dict=True)
        data = multi_task_dataset(tasks, "uniform", batch_size=32, seed=0)
        model.fit(data, epochs=4, verbose=0)
        after = model.evaluate(test, labels, verbose=0, return_dict=True)
        probs = model.predict(xt, verbose=0)
        for name, rows in (("low", high), ("high", ~high)):
            self.assertLess(before[f"{name}_accuracy"], 0.5)
            self.assertGreater(after[f"{name}_accuracy"], 0.85)
            self.assertLess(after[f"{name}_loss"], before[f"{name}_loss"])
            # The logged accuracy is that of the task's own head on the task's own examples.
            self.assertAllClose(after[f"{name}_accuracy"], np.mean(probs[name][rows].argmax(-1) == labels[rows]))

    def test_call_returns_every_head_and_keras_round_trip(self):
        model = MultiTaskModel(trunk(), CLASSES, loss_weights=[0.5, 0.0, 2.0])
        model.compile(optimizer="adam")
        x, task, y = batch(task=(0, 1, 2, 2))
        model.fit(one_batch(x, task, y), epochs=1, verbose=0)
        probs = model.predict(x, verbose=0)
        self.assertEqual(list(probs), list(CLASSES))
        for name, expected in numpy_probabilities(model, x).items():
            self.assertAllClose(probs[name], expected, atol=1e-6)
        # The training dict works as input too (task ids ignored).
        self.assertAllClose(model({"inputs": x, "task": task})["beta"], probs["beta"], atol=1e-6)
        reloaded = self.run_serialization_test(model, x)
        self.assertEqual(reloaded.task_names, ("gamma", "alpha", "beta"))
        self.assertEqual(reloaded.loss_weights, {"gamma": 0.5, "alpha": 0.0, "beta": 2.0})
        reloaded.fit(one_batch(x, task, y), epochs=1, verbose=0)  # comes back compiled

        uncertain = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
        uncertain.compile(optimizer="adam")
        uncertain.fit(one_batch(x, task, y), epochs=2, verbose=0)
        reloaded = self.run_serialization_test(uncertain, x)
        self.assertNotAllClose(uncertain.log_variances.numpy(), np.zeros(3))
        self.assertAllClose(reloaded.log_variances.numpy(), uncertain.log_variances.numpy(), atol=0, rtol=0)

    def test_export_straight_after_fit_and_after_reload(self):
        x, task, y = batch()

        def build():
            model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            return model

        model, reloaded = self.run_fit_then_export_test(build, one_batch(x, task, y), x)
        expected = model.predict(x, verbose=0)
        for source in (model, reloaded):  # one signature per task, right after fit and after reload
            path = self.get_temp_dir() + "/per_task"
            source.export_per_task(path)
            restored = tf.saved_model.load(path)
            for name in CLASSES:
                outputs = restored.signatures[name](**{self.input_name(restored, name): tf.constant(x)})
                self.assertEqual(list(outputs), [name])
                self.assertAllClose(outputs[name], expected[name], atol=1e-6)
            self.assertEqual(sorted(restored.signatures["serving_default"].structured_outputs), sorted(CLASSES))

    @staticmethod
    def input_name(restored, signature):
        (name,) = restored.signatures[signature].structured_input_signature[1]
        return name

    def test_logit_heads(self):
        heads = {"a": keras.layers.Dense(3, name="a_logits"), "b": keras.Sequential([keras.layers.Dense(2)])}
        model = MultiTaskModel(trunk(), heads, from_logits=True)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        x, task, y = batch(task=(0, 1, 1, 0))
        y = np.minimum(y, 1)
        features = model.trunk(x)
        logits = {name: head(features).numpy().astype("float64") for name, head in heads.items()}
        probs = model.predict(x, verbose=0)
        expected_loss = 0.0
        for index, name in enumerate(heads):
            p = np.exp(logits[name]) / np.exp(logits[name]).sum(-1, keepdims=True)
            self.assertAllClose(probs[name], p, atol=1e-6)
            rows = task == index
            expected_loss += -np.log(p[rows, y[rows]]).mean()
        logs = model.fit(one_batch(x, task, y), epochs=1, verbose=0).history
        self.assertAllClose(logs["loss"][0], expected_loss, rtol=1e-5)

    def test_mixed_precision(self):
        x, task, y = batch()

        def build():
            model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
            model.compile(optimizer="adam")
            return model

        model, _ = self.run_mixed_precision_test(build, {"inputs": x, "task": task}, y, batch_size=8)
        self.assertEqual(model.predict(x, verbose=0)["alpha"].dtype, np.float32)

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["`heads` must be a non-empty dict", "Received: heads={}"], MultiTaskModel, trunk(), {}
        )
        self.assertRaisesValueError("`heads` keys must be task names", MultiTaskModel, trunk(), {"a b": 2})
        self.assertRaisesValueError("`heads['a']` must be an integer >= 2", MultiTaskModel, trunk(), {"a": 1})
        self.assertRaisesValueError("`heads['a']` must be a Keras layer", MultiTaskModel, trunk(), {"a": "dense"})
        self.assertRaisesValueError(
            ["`heads['a']` must output one score per class", "(None, 6, 2)"],
            MultiTaskModel,
            keras.Sequential([keras.Input((6, 4)), keras.layers.Dense(3)]),
            {"a": keras.layers.Dense(2)},
        )
        self.assertRaisesValueError(
            "`trunk` must be a built Keras model", MultiTaskModel, keras.layers.Dense(3), {"a": 2}
        )
        for weights, fragments in (
            ([1.0, 2.0], ["one weight per task (3", "(2 weights)"]),
            ({"gamma": 1.0, "alpha": -1.0, "beta": 1.0}, ["non-negative finite", "-1.0"]),
            (
                {"gamma": 1.0, "alpha": 1.0, "delta": 1.0},
                ["name every task exactly once", "missing ['beta']", "unknown ['delta']"],
            ),
            ([0.0, 0.0, 0.0], "at least one of them positive"),
            ("gradnorm", ["`loss_weights` must be one of ['uniform', 'uncertainty']", "gradnorm"]),
            (2.0, "Received: loss_weights=2.0"),
        ):
            self.assertRaisesValueError(fragments, MultiTaskModel, trunk(), CLASSES, loss_weights=weights)
        self.assertRaisesValueError(
            "`from_logits` must be True or False", MultiTaskModel, trunk(), CLASSES, from_logits=1
        )
        model = MultiTaskModel(trunk(), CLASSES)
        self.assertRaisesValueError("`loss` must be None", model.compile, optimizer="adam", loss="mse")

    def test_bad_data(self):
        model = MultiTaskModel(trunk(), CLASSES)
        model.compile(optimizer="sgd")
        x, task, y = batch()
        self.assertRaisesValueError(
            ["`x['task']` must hold integer task ids in [0, 3)", "values in [0, 3]"],
            model.fit,
            {"inputs": x, "task": np.where(task == 1, 3, task)},
            y,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["class ids in [0, 2) for the examples of task 'alpha'", "labels in [3, 3]"],
            model.fit,
            {"inputs": x, "task": task},
            np.where(task == 1, 3, y),
            verbose=0,
        )
        self.assertRaisesValueError(
            "`x['task']` must contain at least one example", model.evaluate, {"inputs": x[:0], "task": task[:0]}, y[:0]
        )
        self.assertRaisesValueError(
            ['`MultiTaskModel` trains on batches `({"inputs": x, "task": task_ids}, y)`', "Received: x of type"],
            model.fit,
            x,
            y,
            verbose=0,
        )
        # Datasets are checked in the graph.
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"task ids must lie in \[0, 3\)"):
            model.fit(one_batch(x, np.where(task == 1, 3, task), np.zeros_like(y)), epochs=1, verbose=0)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r"labels must lie in \[0, classes"):
            model.evaluate(one_batch(x, task, y + 4), verbose=0)

    def test_nan_inputs_stop_training_with_nan_logs(self):
        x, task, y = batch()
        x[3, 0] = np.nan
        model = MultiTaskModel(trunk(), CLASSES, loss_weights="uncertainty")
        model.compile(optimizer="sgd")
        data = tf.data.Dataset.from_tensor_slices(({"inputs": x, "task": task}, y)).batch(4)
        batches = assert_terminates_on_nan(self, model, data, stop_batch=0)
        self.assertEqual(
            sorted(batches[-1][1]), sorted(["loss"] + [f"{n}_{m}" for n in CLASSES for m in ("loss", "accuracy")])
        )
