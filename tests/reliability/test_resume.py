"""Interrupted training resumes to the same weights as uninterrupted training.

For every model of the zoo (a recipe classifier and each custom-step model):
`fit` under `keras.callbacks.BackupAndRestore` that dies after its first epoch, then
a fresh start (a newly built model, the same command) that resumes, ends with the
same weights and optimizer state as one uninterrupted `fit`; and the killed run's
`.keras` file, reloaded and fit on from where it stopped, ends there too.
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

    def test_interrupted_and_reloaded_runs_continue_as_uninterrupted(self):
        # One uninterrupted run per model serves both checks: a run killed after its first epoch
        # resumes under BackupAndRestore (a fresh start, the same command), and its `.keras` file
        # saved at the kill, reloaded and fit on from epoch 1, both end where the uninterrupted run ends.
        for name in model_zoo.NAMES:
            with self.subTest(model=name):
                entry = _build(name)
                model_zoo.fit(entry, EPOCHS)
                uninterrupted = _state(entry.model)
                folder = os.path.join(self.get_temp_dir(), name)
                backup = os.path.join(folder, "backup")
                killed = _build(name)
                with self.assertRaises(Interrupt):
                    model_zoo.fit(
                        killed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(0)]
                    )
                path = os.path.join(folder, "model.keras")
                killed.model.save(path)
                resumed = _build(name)
                model_zoo.fit(resumed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup)])
                self.assertSameState(_state(resumed.model), uninterrupted, f"{name}: resumed run differs")
                reloaded = killed._replace(model=keras.saving.load_model(path))
                model_zoo.fit(reloaded, EPOCHS, initial_epoch=1)
                self.assertSameState(_state(reloaded.model), uninterrupted, f"{name}: reloaded run differs")
