import math

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.callbacks import GradientReversalSchedule
from keras_transfer.callbacks import ganin_factor
from keras_transfer.layers import GradientReversal
from tests.test_case import TestCase


class _Recorder(keras.callbacks.Callback):
    """Reads the factor of `layer` at every batch (after the schedule set it)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.values = []

    def on_train_batch_begin(self, batch, logs=None):
        self.values.append(self.layer.factor)


def _model():
    inputs = keras.Input((2,))
    inner = keras.Sequential([keras.Input((2,)), GradientReversal(factor=5.0, name="nested_grl")])
    grl = GradientReversal(factor=5.0)
    outputs = keras.layers.Dense(1)(grl(keras.layers.Dense(2)(inner(inputs))))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model, grl, inner.layers[0]


class GradientReversalScheduleTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.x = rng.normal(size=(12, 2)).astype("float32")
        cls.y = rng.normal(size=(12, 1)).astype("float32")

    def test_ganin_formula(self):
        # λ_p = 2 / (1 + exp(-γ p)) - 1 (Ganin et al. 2016, eq. in §5.2.2).
        for p, gamma in ((0.0, 10.0), (0.1, 10.0), (0.5, 10.0), (1.0, 10.0), (0.3, 2.0)):
            self.assertAllClose(ganin_factor(p, gamma), 2.0 / (1.0 + np.exp(-gamma * p)) - 1.0)
        self.assertEqual(ganin_factor(0.0), 0.0)

    def test_schedule_during_fit(self):
        model, grl, nested = _model()
        schedule = GradientReversalSchedule("ganin", gamma=10.0, max_factor=2.0)
        recorder = _Recorder(grl)
        history = model.fit(self.x, self.y, batch_size=4, epochs=2, verbose=0, callbacks=[schedule, recorder])
        total = 2 * 3
        expected = [2.0 * (2.0 / (1.0 + math.exp(-10.0 * s / total)) - 1.0) for s in range(total)]
        self.assertAllClose(np.array(recorder.values), np.array(expected), atol=1e-6)
        # Nested layers are driven too, and the factor is logged per epoch.
        self.assertAllClose(nested.factor, expected[-1], atol=1e-6)
        self.assertAllClose(history.history["grl_factor"], [expected[2], expected[5]], atol=1e-6)

    def test_constant_linear_and_callable(self):
        for schedule, reference in (
            ("constant", lambda p: 0.5),
            ("linear", lambda p: 0.5 * p),
            (lambda p: p**2, lambda p: 0.5 * p**2),
        ):
            model, grl, _ = _model()
            recorder = _Recorder(grl)
            model.fit(
                self.x,
                self.y,
                batch_size=6,
                epochs=2,
                verbose=0,
                callbacks=[GradientReversalSchedule(schedule, max_factor=0.5, total_steps=4), recorder],
            )
            self.assertAllClose(np.array(recorder.values), np.array([reference(s / 4) for s in range(4)]), atol=1e-6)

    def test_progress_is_clipped_at_total_steps(self):
        model, grl, _ = _model()
        recorder = _Recorder(grl)
        model.fit(
            self.x,
            self.y,
            batch_size=4,
            epochs=2,
            verbose=0,
            callbacks=[GradientReversalSchedule("linear", total_steps=2), recorder],
        )
        self.assertAllClose(np.array(recorder.values), [0.0, 0.5, 1.0, 1.0, 1.0, 1.0])

    def test_continued_fit_goes_on_from_initial_epoch(self):
        # fit(initial_epoch=k) (resuming, e.g. after a `.keras` reload) continues the
        # schedule at step k * steps_per_epoch instead of restarting it at 0.
        model, grl, _ = _model()
        first, second = _Recorder(grl), _Recorder(grl)
        model.fit(
            self.x,
            self.y,
            batch_size=4,
            epochs=2,
            verbose=0,
            shuffle=False,
            callbacks=[GradientReversalSchedule("linear", total_steps=12), first],
        )
        history = model.fit(
            self.x,
            self.y,
            batch_size=4,
            epochs=4,
            initial_epoch=2,
            verbose=0,
            shuffle=False,
            callbacks=[GradientReversalSchedule("linear"), second],
        )
        self.assertAllClose(np.array(first.values), np.arange(6) / 12, atol=1e-6)
        self.assertAllClose(np.array(second.values), np.arange(6, 12) / 12, atol=1e-6)
        self.assertAllClose(history.history["grl_factor"], [8 / 12, 11 / 12], atol=1e-6)

    def test_unknown_length_counts_trained_batches_only(self):
        # With an unknown epoch length, `fit` begins one more batch per epoch that finds
        # the data exhausted: it is no training step and must not advance the schedule.
        model, grl, _ = _model()

        class _Used(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.values = []

            def on_train_batch_end(self, batch, logs=None):
                self.values.append(grl.factor)

        used = _Used()
        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y)).batch(4).filter(lambda a, b: True)
        model.fit(ds, epochs=2, verbose=0, callbacks=[GradientReversalSchedule("linear", total_steps=6), used])
        self.assertAllClose(np.array(used.values), np.arange(6) / 6, atol=1e-6)

    def test_selected_layers_only(self):
        model, grl, nested = _model()
        model.fit(
            self.x,
            self.y,
            batch_size=12,
            epochs=1,
            verbose=0,
            callbacks=[GradientReversalSchedule("constant", max_factor=0.25, layers=[grl])],
        )
        self.assertAllClose(grl.factor, 0.25)
        self.assertAllClose(nested.factor, 5.0)

    def test_unknown_length_needs_total_steps(self):
        model, _, _ = _model()
        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y)).batch(4).repeat().take(3)
        ds = ds.filter(lambda a, b: True)  # unknown cardinality
        self.assertRaisesValueError(
            ["`total_steps`", "Received: total_steps=None"],
            model.fit,
            ds,
            epochs=1,
            verbose=0,
            callbacks=[GradientReversalSchedule()],
        )
        model.fit(ds, epochs=1, verbose=0, callbacks=[GradientReversalSchedule(total_steps=3)])

    def test_errors(self):
        self.assertRaisesValueError(["`schedule`", "'cosine'", "callable"], GradientReversalSchedule, "cosine")
        self.assertRaisesValueError(["`gamma`", "Received: gamma=0"], GradientReversalSchedule, gamma=0)
        self.assertRaisesValueError(
            ["`max_factor`", "Received: max_factor=-1"], GradientReversalSchedule, max_factor=-1
        )
        self.assertRaisesValueError(
            ["`total_steps`", "Received: total_steps=0"], GradientReversalSchedule, total_steps=0
        )
        self.assertRaisesValueError(["`layers`", "Dense"], GradientReversalSchedule, layers=[keras.layers.Dense(1)])
        plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        plain.compile(optimizer="sgd", loss="mse")
        self.assertRaisesValueError(
            ["`GradientReversal`", "without one"],
            plain.fit,
            self.x,
            self.y,
            epochs=1,
            verbose=0,
            callbacks=[GradientReversalSchedule()],
        )
        model, _, _ = _model()
        self.assertRaisesValueError(
            ["`schedule` must return a non-negative", "-1"],
            model.fit,
            self.x,
            self.y,
            epochs=1,
            verbose=0,
            callbacks=[GradientReversalSchedule(lambda p: -1.0)],
        )
