"""Interrupted training resumes to the same weights as uninterrupted training.

For every model of the zoo (a recipe classifier and each custom-step model):
`fit` under `keras.callbacks.BackupAndRestore` that dies after its first epoch, then
a fresh start (a newly built model, the same command) that resumes, ends with the
same weights and optimizer state as one uninterrupted `fit`; and `.keras` save ->
reload -> `fit` again equals going on with the model in memory.
"""

import os

import keras

from tests import model_zoo
from tests.test_case import TestCase

EPOCHS = 3


class Interrupt(Exception):
    """Raised by `DieAfterEpoch`: a training run killed mid-way."""


class DieAfterEpoch(keras.callbacks.Callback):
    """Kills `fit` at the end of epoch `epoch` (after BackupAndRestore has saved it)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt(f"killed after epoch {epoch}")


def _build(name):
    entry = model_zoo.build(name, seed=7)
    if not entry.model.built:
        # BackupAndRestore needs a built model; these learn their input shapes from data, so
        # (as Keras's own message says) they are called on a batch first.
        entry.model(entry.inputs(1))
    return entry


def _state(model):
    return [v.numpy() for v in model.weights] + [v.numpy() for v in model.optimizer.variables]


class ResumeTest(TestCase):
    def assertSameState(self, actual, expected, msg):
        self.assertLen(actual, len(expected))
        for a, b in zip(actual, expected):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5, msg=msg)

    def test_backup_and_restore_resumes_exactly(self):
        for name in model_zoo.NAMES:
            with self.subTest(model=name):
                entry = _build(name)
                model_zoo.fit(entry, EPOCHS)
                uninterrupted = _state(entry.model)

                backup = os.path.join(self.get_temp_dir(), "backup")
                entry = _build(name)
                with self.assertRaises(Interrupt):
                    model_zoo.fit(entry, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(0)])
                entry = _build(name)
                model_zoo.fit(entry, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup)])
                self.assertSameState(_state(entry.model), uninterrupted, f"{name}: resumed run differs")

    def test_keras_reload_continues_as_in_memory(self):
        for name in model_zoo.NAMES:
            with self.subTest(model=name):
                entry = _build(name)
                model_zoo.fit(entry, 1)
                path = os.path.join(self.get_temp_dir(), "model.keras")
                entry.model.save(path)
                reloaded = entry._replace(model=keras.saving.load_model(path))
                model_zoo.fit(entry, 2, initial_epoch=1)
                model_zoo.fit(reloaded, 2, initial_epoch=1)
                self.assertSameState(_state(reloaded.model), _state(entry.model), f"{name}: reloaded run differs")
