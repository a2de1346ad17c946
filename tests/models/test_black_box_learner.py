import numpy as np
import keras

from keras_transfer.datasets import sinusoid_tasks
from keras_transfer.models import BlackBoxLearner
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
        self.run_serialization_test(model, x)
        self.run_export_test(model, x)
        self.run_mixed_precision_test(self.build, x, y, batch_size=16)

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
