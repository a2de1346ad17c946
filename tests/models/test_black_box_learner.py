import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import sinusoid_tasks
from keras_transfer.models import BlackBoxLearner
from tests.models._terminate_on_nan import assert_terminates_on_nan
from tests.test_case import TestCase


class BlackBoxLearnerTest(TestCase):
    def build(self, **kwargs):
        keras.utils.set_random_seed(0)
        model = BlackBoxLearner(num_outputs=1, context_dim=8, hidden_units=16, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return model

    def test_context_is_permutation_invariant_mean_and_conditions_predictions(self):
        model = self.build()
        (sx, sy, qx), qy = sinusoid_tasks(3, 5, 4, seed=0)
        out = model((sx, sy, qx))
        self.assertEqual(tuple(out.shape), (3, 4, 1))
        perm = np.random.default_rng(0).permutation(5)
        self.assertAllClose(model.task_context(sx[:, perm], sy[:, perm]), model.task_context(sx, sy), atol=1e-6)
        # Reference: mean over the support of the pair encoder applied to [x, y].
        pairs = np.concatenate([sx, sy], -1)
        w = [v.numpy() for v in model.pair_encoder.weights]
        h = np.maximum(pairs @ w[0] + w[1], 0)
        h = np.maximum(h @ w[2] + w[3], 0)
        expected = (h @ w[4] + w[5]).mean(1)
        self.assertAllClose(model.task_context(sx, sy), expected, atol=1e-5)
        # Different support sets give different predictions for the same query points.
        swapped = model((sx[::-1], sy[::-1], qx))
        self.assertNotAllClose(out[0], swapped[0])

    def test_fit_learns_sinusoids_save_export_mixed_precision(self):
        model = self.build()
        x, y = sinusoid_tasks(64, 10, 10, seed=1)
        before = model.evaluate(x, y, verbose=0)
        model.fit(x, y, batch_size=16, epochs=15, verbose=0)
        self.assertLess(model.evaluate(x, y, verbose=0), 0.7 * before)
        self.run_fit_test(model, x, y, batch_size=16, steps=1)
        self.run_serialization_test(model, x)  # export: test_export_straight_after_fit_and_reload
        # The mean (regression) set encoder under mixed precision; the model zoo runs the class-wise one.
        self.run_mixed_precision_test(self.build, x, y, batch_size=16)

    def test_export_straight_after_fit_and_reload(self):
        # Regression: float32 targets in the support set.
        x, y = sinusoid_tasks(8, 5, 4, seed=2)
        self.run_fit_then_export_test(self.build, x, x, fit_y=y, batch_size=4)

        # Classification: int64 class ids (as NumPy and sample_episodes give them), any shots.
        def build():
            keras.utils.set_random_seed(0)
            model = BlackBoxLearner(3, num_classes=3, context_dim=4, hidden_units=8)
            model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        # Export straight after fit: the model zoo (tests/reliability/test_resume.py).
        x, y = gaussian_episodes(8)
        self.assertEqual(x[1].dtype, np.int64)
        model = build()
        model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        path = os.path.join(self.get_temp_dir(), "exported")
        reloaded.export(path, verbose=False)
        self.assertExportMatchesPredict(path, reloaded, x)
        self.assertAllClose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
        other, _ = gaussian_episodes(3, k_shot=4, queries=2, seed=5)
        outputs = tf.saved_model.load(path).signatures["serving_default"](
            support_x=other[0], support_y=other[1], query_x=other[2]
        )
        self.assertAllClose(next(iter(outputs.values())), reloaded.predict(other, verbose=0), atol=1e-5)

    def test_terminate_on_nan_and_no_finite_metric_with_nan_weights(self):
        # Divergence (no NaN in the data). NaN inputs stop training at batch 0 for the class-wise
        # model in the model zoo (tests/reliability/test_mixed_precision.py; NaN: test_resume.py); compiled metrics
        # are NaN with NaN weights: tests/models/test_train_step_model.py.
        x, y = sinusoid_tasks(32, 5, 4, seed=2)
        model = self.build()
        model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse", metrics=["mae"])
        assert_terminates_on_nan(self, model, x, y, batch_size=4)

    def test_classification_and_errors(self):
        keras.utils.set_random_seed(0)
        enc = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
        model = BlackBoxLearner(3, num_classes=3, feature_encoder=enc, context_dim=4)
        sx = np.zeros((2, 6, 4, 4, 1), "float32")
        sy = np.tile(np.arange(3).repeat(2), (2, 1))
        self.assertEqual(tuple(model((sx, sy, sx[:, :5])).shape), (2, 5, 3))
        self.assertRaisesValueError("num_outputs", BlackBoxLearner, 0)
        self.assertRaisesValueError("num_classes", BlackBoxLearner, 3, num_classes=1)
        self.assertRaisesValueError("same feature shape", model, (sx, sy, sx[:, :, :2]))
        self.assertRaisesValueError("meta-batch of tasks", model, sx)


def gaussian_episodes(num, n_way=3, k_shot=2, queries=4, dim=4, seed=0):
    """Separable few-shot tasks: fresh random class centres per episode, small noise.

    Only a learner that compares queries with the support set of their own episode can
    beat chance (1 / n_way): the centres of one episode say nothing about the next.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num, n_way, dim)).astype("float32") * 2.0
    sy = np.tile(np.arange(n_way).repeat(k_shot), (num, 1))
    qy = np.tile(np.arange(n_way).repeat(queries), (num, 1))
    pick = lambda labels: np.take_along_axis(centres, labels[..., None], 1)  # noqa: E731
    sx = pick(sy) + 0.2 * rng.normal(size=sy.shape + (dim,)).astype("float32")
    qx = pick(qy) + 0.2 * rng.normal(size=qy.shape + (dim,)).astype("float32")
    return (sx, sy.astype("int64"), qx), qy.astype("int64")


class BlackBoxClassificationTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(1)
        cls.model = BlackBoxLearner(3, num_classes=3, context_dim=16, hidden_units=32)
        cls.model.compile(
            keras.optimizers.Adam(3e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        cls.train = gaussian_episodes(2048, seed=0)
        cls.test = gaussian_episodes(200, seed=1)
        cls.before = cls.model.evaluate(*cls.test, verbose=0)[1]
        cls.model.fit(*cls.train, batch_size=32, epochs=4, verbose=0)

    def test_class_wise_is_default_and_learns_separable_tasks(self):
        self.assertEqual(self.model.pooling, "class_wise")
        self.assertLess(self.before, 0.6)
        # New episodes with new class centres: chance is 1/3.
        logits = self.model.predict(self.test[0], verbose=0)
        accuracy = np.mean(np.argmax(logits, -1) == self.test[1])
        self.assertGreater(accuracy, 0.9)

    def test_context_reference_and_label_equivariance(self):
        (sx, sy, qx), _ = gaussian_episodes(2, seed=3)
        # Reference: mean of the encoder's outputs over each class's support examples.
        w = [v.numpy() for v in self.model.pair_encoder.weights]
        h = np.maximum(sx @ w[0] + w[1], 0)
        h = np.maximum(h @ w[2] + w[3], 0)
        z = h @ w[4] + w[5]
        expected = np.stack([np.stack([z[t][sy[t] == c].mean(0) for c in range(3)]) for t in range(2)])
        self.assertAllClose(self.model.task_context(sx, sy), expected, atol=1e-5)
        # Relabelling the support classes (c -> perm[c]) permutes the logits the same way.
        perm = np.array([2, 0, 1])
        out = self.model((sx, sy, qx)).numpy()
        relabelled = self.model((sx, perm[sy], qx)).numpy()
        self.assertAllClose(relabelled[..., perm], out, atol=1e-5)

    def test_save_and_errors(self):
        # Export and a mixed-precision step of this (class-wise) model: the model zoo and
        # BlackBoxLearnerTest.test_export_straight_after_fit_and_reload.
        x = self.test[0]
        self.run_serialization_test(self.model, x)
        self.assertRaisesValueError(
            ["num_classes", "num_outputs=4", 'pooling="mean"'], BlackBoxLearner, 4, num_classes=3
        )
        self.assertRaisesValueError("pooling", BlackBoxLearner, 3, num_classes=3, pooling="max")
        # The mean (neural-process) set encoder stays available for classification too.
        mean = BlackBoxLearner(4, num_classes=3, pooling="mean")
        sx, sy, qx = x
        self.assertEqual(tuple(mean((sx[:2], sy[:2], qx[:2])).shape), (2, 12, 4))
        # A config saved before `pooling` existed (no such key) loads as the mean encoder it was.
        config = mean.get_config()
        del config["pooling"]
        self.assertEqual(BlackBoxLearner.from_config(config).pooling, "mean")
