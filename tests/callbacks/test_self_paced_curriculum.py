import keras
import numpy as np

from keras_transfer.callbacks import SelfPacedCurriculum
from keras_transfer.datasets import CurriculumOrder
from keras_transfer.datasets import curriculum_dataset
from keras_transfer.models import SourceOnly
from keras_transfer.schedules import LinearPacing
from tests.recipes.test_curriculum_scoring import numpy_cross_entropy
from tests.test_case import TestCase


def data():
    """Separable on the first feature, with the labels of the 8 examples farthest from the boundary flipped."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    flipped = np.argsort(-np.abs(x[:, 0]))[:8]
    y[flipped] = 1 - y[flipped]
    return x, y, flipped


class SelfPacedCurriculumTest(TestCase):
    def test_order_follows_the_model_loss_as_it_learns(self):
        x, y, flipped = data()
        order = CurriculumOrder(np.zeros(len(x)))
        pacing = LinearPacing(0.5, ramp_steps=12, total_steps=24)
        dataset = curriculum_dataset(x, y, order, pacing, batch_size=16, seed=0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="zeros")])
        model.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        callback = SelfPacedCurriculum(order, x, y, every=2)
        orders = []
        record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: orders.append(order.order.numpy()))
        model.fit(dataset, epochs=4, steps_per_epoch=6, callbacks=[callback, record], verbose=0)
        # Scored before training (zero weights: every loss is log 2, the identity order), after epochs 2 and 4.
        self.assertEqual([epoch for epoch, _ in callback.history], [-1, 1, 3])
        self.assertAllClose(callback.history[0][1], np.log(2.0), atol=1e-6)
        self.assertEqual(order.updates, 3)
        self.assertEqual(orders[0].tolist(), list(range(len(x))))
        self.assertNotEqual(orders[1].tolist(), orders[0].tolist())
        # Reference: NumPy cross-entropy of the final weights, sorted stably.
        kernel, bias = model.get_weights()
        expected = numpy_cross_entropy(x.astype("float64") @ kernel + bias, y)
        self.assertEqual(order.order.numpy().tolist(), np.argsort(expected, kind="stable").tolist())
        self.assertAllClose(order.difficulty, expected, atol=1e-5)
        # The learner finds the mislabelled examples hardest: they close the order.
        self.assertEqual(set(order.order.numpy()[-8:].tolist()), set(flipped.tolist()))
        self.assertLess(callback.history[-1][1], callback.history[0][1])

    def test_custom_step_model_with_a_transfer_order_first(self):
        x, y, flipped = data()
        order = CurriculumOrder(-np.abs(x[:, 0]))  # a given score for the first epochs
        start = order.order.numpy().copy()
        dataset = curriculum_dataset(x, y, order, LinearPacing(0.5, 6, total_steps=12), batch_size=16)
        fe = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh")])
        model = SourceOnly(fe, keras.layers.Dense(2))
        model.compile(optimizer=keras.optimizers.SGD(0.3))
        callback = SelfPacedCurriculum(order, x, y, every=2, rescore_at_start=False)
        model.fit(dataset, epochs=4, steps_per_epoch=3, callbacks=[callback], verbose=0)
        self.assertEqual([epoch for epoch, _ in callback.history], [1, 3])
        logits = model.predict(x, verbose=0)
        expected = numpy_cross_entropy(logits, y)
        self.assertEqual(order.order.numpy().tolist(), np.argsort(expected, kind="stable").tolist())
        self.assertNotEqual(order.order.numpy().tolist(), start.tolist())

    def test_errors(self):
        x, y, flipped = data()
        order = CurriculumOrder(np.zeros(len(x)))
        self.assertRaisesValueError(
            "`order` must be the keras_transfer.datasets.CurriculumOrder", SelfPacedCurriculum, np.zeros(96), x, y
        )
        self.assertRaisesValueError(["len(x)=95"], SelfPacedCurriculum, order, x[:95], y)
        self.assertRaisesValueError("Received: every=0", SelfPacedCurriculum, order, x, y, every=0)
        self.assertRaisesValueError(
            "Received: rescore_at_start='yes'", SelfPacedCurriculum, order, x, y, rescore_at_start="yes"
        )
