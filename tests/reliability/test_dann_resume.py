"""DANN with `GradientReversalSchedule` resumes where it stopped.

An interrupted `fit` resumed by `keras.callbacks.BackupAndRestore`, and a `.keras`
save -> reload -> `fit(initial_epoch=k)`, must see the same reversal factors λ_p
(Ganin et al.'s schedule, computed here with NumPy) and end with the same weights and
optimizer state as one uninterrupted `fit`. Before the schedule derived its step from
the epoch, a resumed run restarted λ at 0 (0.291, 0.588 instead of 0.782, 0.891).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.callbacks import GradientReversalSchedule
from keras_transfer.datasets import domain_pairs
from keras_transfer.models import DANN
from tests.reliability.test_resume import DieAfterEpoch
from tests.reliability.test_resume import Interrupt
from tests.test_case import TestCase

EPOCHS = 4
STEPS = 3  # 24 source / 24 target examples in batches of 8
GAMMA = 10.0


class _FactorRecorder(keras.callbacks.Callback):
    """The factor the model's reversal layer used in every training step."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(self.model.gradient_reversal.factor)


def _expected_factors(steps):
    progress = np.arange(steps) / (EPOCHS * STEPS)
    return 2.0 / (1.0 + np.exp(-GAMMA * progress)) - 1.0


def _state(model):
    return [v.numpy() for v in model.weights] + [v.numpy() for v in model.optimizer.variables]


class DANNResumeTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(0)
        cls.xs = rng.normal(size=(24, 4)).astype("float32")
        cls.ys = rng.integers(0, 3, size=24).astype("int64")
        cls.xt = (rng.normal(size=(24, 4)) + 1.0).astype("float32")

    def build(self):
        keras.utils.set_random_seed(3)
        fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
        lc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        dc = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(1)])
        model = DANN(fe, lc, dc, factor=0.0)
        # Adam: its moments are optimizer state that a resume must restore too.
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        return model

    def data(self):
        # Unshuffled: every run sees the same batches in every epoch.
        return domain_pairs(self.xs, self.ys, self.xt, batch_size=8, shuffle=False)

    def fit(self, model, callbacks, **kwargs):
        recorder = _FactorRecorder()
        schedule = GradientReversalSchedule("ganin", gamma=GAMMA)
        model.fit(self.data(), epochs=EPOCHS, verbose=0, callbacks=[schedule, recorder] + callbacks, **kwargs)
        return recorder.values

    def assertSameState(self, actual, expected, msg):
        self.assertLen(actual, len(expected))
        for a, b in zip(actual, expected):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5, msg=msg)

    def uninterrupted(self):
        model = self.build()
        factors = self.fit(model, [])
        self.assertAllClose(np.array(factors), _expected_factors(EPOCHS * STEPS), atol=1e-6)
        return _state(model)

    def test_backup_and_restore_continues_the_schedule(self):
        expected_state = self.uninterrupted()
        for died_after in (0, 1):
            with self.subTest(died_after=died_after):
                backup = os.path.join(self.get_temp_dir(), "backup")
                recorder = _FactorRecorder()
                with self.assertRaises(Interrupt):
                    self.fit(
                        self.build(), [keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(died_after), recorder]
                    )
                done = (died_after + 1) * STEPS
                self.assertAllClose(np.array(recorder.values), _expected_factors(done), atol=1e-6)
                # A fresh process would build a fresh model: the backup restores it.
                model = self.build()
                resumed = self.fit(model, [keras.callbacks.BackupAndRestore(backup)])
                self.assertAllClose(
                    np.array(resumed),
                    _expected_factors(EPOCHS * STEPS)[done:],
                    atol=1e-6,
                    msg="the resumed run restarted the reversal schedule",
                )
                self.assertSameState(_state(model), expected_state, "resumed DANN differs")

    def test_keras_reload_continues_as_in_memory(self):
        expected_state = self.uninterrupted()
        model = self.build()
        recorder = _FactorRecorder()
        # The first 2 of EPOCHS epochs (the schedule spans all of them), then a save.
        model.fit(
            self.data(),
            epochs=2,
            verbose=0,
            callbacks=[GradientReversalSchedule("ganin", gamma=GAMMA, total_steps=EPOCHS * STEPS), recorder],
        )
        self.assertAllClose(np.array(recorder.values), _expected_factors(2 * STEPS), atol=1e-6)
        path = os.path.join(self.get_temp_dir(), "dann.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertEqual(int(reloaded.optimizer.iterations), 2 * STEPS)

        in_memory = self.fit(model, [], initial_epoch=2)
        after_reload = self.fit(reloaded, [], initial_epoch=2)
        tail = _expected_factors(EPOCHS * STEPS)[2 * STEPS :]
        self.assertAllClose(np.array(in_memory), tail, atol=1e-6)
        self.assertAllClose(np.array(after_reload), tail, atol=1e-6)
        self.assertSameState(_state(reloaded), _state(model), "reloaded DANN differs from in memory")
        self.assertSameState(_state(model), expected_state, "continued DANN differs from one fit")

    def _unknown_length_fit(self, model, callbacks, **kwargs):
        data = self.data().repeat().filter(lambda x, y: True)  # unknown cardinality
        self.assertEqual(int(data.cardinality()), int(tf.data.UNKNOWN_CARDINALITY))
        recorder = _FactorRecorder()
        schedule = GradientReversalSchedule("ganin", gamma=GAMMA, total_steps=EPOCHS * STEPS)
        model.fit(data, epochs=EPOCHS, verbose=0, callbacks=[schedule, recorder] + callbacks, **kwargs)
        return recorder.values

    def test_unknown_data_length_with_steps_per_epoch_resumes_exactly(self):
        model = self.build()
        factors = self._unknown_length_fit(model, [], steps_per_epoch=STEPS)
        self.assertAllClose(np.array(factors), _expected_factors(EPOCHS * STEPS), atol=1e-6)
        expected_state = _state(model)
        backup = os.path.join(self.get_temp_dir(), "backup")
        with self.assertRaises(Interrupt):
            self._unknown_length_fit(
                self.build(), [keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(1)], steps_per_epoch=STEPS
            )
        model = self.build()
        resumed = self._unknown_length_fit(model, [keras.callbacks.BackupAndRestore(backup)], steps_per_epoch=STEPS)
        self.assertAllClose(np.array(resumed), _expected_factors(EPOCHS * STEPS)[2 * STEPS :], atol=1e-6)
        self.assertSameState(_state(model), expected_state, "resumed DANN differs")

    def test_unknown_epoch_length_resumes_from_the_optimizer_iterations(self):
        # Neither `fit` nor the schedule knows how many steps the lost epochs had: the
        # schedule goes on from the optimizer's restored `iterations` instead of from 0.
        # (Keras counts one more iteration per epoch of unknown length, when it finds the
        # data exhausted, so this continuation is close but not exact; see the test above.)
        data = self.data().filter(lambda x, y: True)
        backup = os.path.join(self.get_temp_dir(), "backup")
        recorder = _FactorRecorder()
        schedule = GradientReversalSchedule("ganin", gamma=GAMMA, total_steps=EPOCHS * STEPS)
        with self.assertRaises(Interrupt):
            self.build().fit(
                data,
                epochs=EPOCHS,
                verbose=0,
                callbacks=[schedule, recorder, keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(1)],
            )
        self.assertAllClose(np.array(recorder.values), _expected_factors(2 * STEPS), atol=1e-6)

        class _IterationsAtStart(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if not hasattr(self, "iterations"):
                    self.iterations = int(self.model.optimizer.iterations)

        model, start, resumed = self.build(), _IterationsAtStart(), _FactorRecorder()
        model.fit(
            data,
            epochs=EPOCHS,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(backup),
                start,
                GradientReversalSchedule("ganin", gamma=GAMMA, total_steps=EPOCHS * STEPS),
                resumed,
            ],
        )
        self.assertGreaterEqual(start.iterations, 2 * STEPS)
        steps = start.iterations + np.arange(2 * STEPS)
        expected = 2.0 / (1.0 + np.exp(-GAMMA * np.minimum(steps / (EPOCHS * STEPS), 1.0))) - 1.0
        self.assertAllClose(np.array(resumed.values), expected, atol=1e-6)
        self.assertGreater(resumed.values[0], recorder.values[-1])
