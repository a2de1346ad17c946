"""Every model of the zoo (a recipe classifier and each custom-step model), through a user's life cycle.

One uninterrupted seeded run per model serves every check (each model build and `fit` costs a trace,
which is most of CI's time):

- Export: the run's model is exported straight after `fit` (nothing called in between), as users do.
  One fresh Python process, which imports TensorFlow and NumPy only, loads every export and calls its
  `serving_default` signature at batch sizes 1 and 7 with the dtypes a client sends (float32 pixels and
  features, int32 token ids and labels); the answers must equal `predict`.
- Resume: a run with the same seed under `keras.callbacks.BackupAndRestore` that dies after its first
  epoch, then a fresh start (a newly built model, the same command) that resumes, ends with the same
  weights and optimizer state as the uninterrupted run; so does the killed run's `.keras` file, reloaded
  and fit on from where it stopped. (So seeded runs are reproducible; another seed starts elsewhere.)
- NaN: fed a NaN in every float input, the reloaded model stops at the first batch under
  `TerminateOnNaN` (the logged loss is NaN), or refuses the data with a `ValueError` saying so; and it
  logs no finite loss while its weights are NaN.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from tests import model_zoo
from tests.test_case import TestCase

EPOCHS = 3
BATCHES = (1, 7)

# Runs in the fresh process: no keras_transfer, and it checks that nothing imported it.
LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    manifest = json.load(open(sys.argv[1]))
    for entry in manifest:
        signature = tf.saved_model.load(entry["export"]).signatures["serving_default"]
        inputs = np.load(entry["inputs"])
        names = sorted(signature.structured_input_signature[1])
        if len(names) != len(inputs.files):
            raise SystemExit(f"{entry['name']}: signature inputs {names}, sent {inputs.files}")
        feed = {}
        for name in names:
            key = name if name in inputs.files else inputs.files[names.index(name)]
            feed[name] = tf.constant(inputs[key])
        outputs = signature(**feed)
        np.savez(entry["outputs"], **{k: v.numpy() for k, v in outputs.items()})
    assert "keras_transfer" not in sys.modules, "the loader imported keras_transfer"
    print("loaded", len(manifest))
    """
)


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


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _build(name, seed=7):
    entry = model_zoo.build(name, seed=seed)
    if not entry.model.built:
        # BackupAndRestore needs a built model; these learn their input shapes from data, so
        # (as Keras's own message says) they are called on a batch first.
        entry.model(entry.inputs(1))
    return entry


def _weights(model):
    return [v.numpy() for v in model.weights]


def _state(model):
    return _weights(model) + [v.numpy() for v in model.optimizer.variables]


def _all_finite(model):
    return all(np.all(np.isfinite(v.numpy())) for v in model.weights if np.issubdtype(np.dtype(v.dtype), np.floating))


def _flat_inputs(x):
    """The named arrays a client sends: dict keys, or the call's positional names."""
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, (tuple, list)):
        return {f"input_{i}": v for i, v in enumerate(x)}
    return {"input_0": x}


class LifeCycleTest(TestCase):
    def assertSameState(self, actual, expected, msg):
        self.assertLen(actual, len(expected))
        for a, b in zip(actual, expected):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5, msg=msg)

    def export_and_predict(self, entry, name, directory):
        """Exports straight after `fit`; the loader's manifest rows, with `predict`'s answers."""
        export = os.path.join(directory, name)
        entry.model.export(export, verbose=False)
        rows = []
        for batch in BATCHES:
            x = entry.inputs(batch)
            key = f"{name}@{batch}"
            inputs = os.path.join(directory, f"{key}_inputs.npz")
            np.savez(inputs, **_flat_inputs(x))
            outputs = os.path.join(directory, f"{key}_outputs.npz")
            rows.append({"name": key, "export": export, "inputs": inputs, "outputs": outputs})
            self.expected[key] = entry.model.predict(x, verbose=0)
        return rows

    def check_resume(self, name, folder, uninterrupted):
        """Killed after epoch 0: resumed by BackupAndRestore, and reloaded from `.keras`. Returns the reload."""
        backup = os.path.join(folder, "backup")
        killed = _build(name)
        start = _weights(killed.model)
        with self.assertRaises(Interrupt):
            model_zoo.fit(killed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup), DieAfterEpoch(0)])
        path = os.path.join(folder, "model.keras")
        killed.model.save(path)
        resumed = _build(name)
        model_zoo.fit(resumed, EPOCHS, callbacks=[keras.callbacks.BackupAndRestore(backup)])
        self.assertSameState(_state(resumed.model), uninterrupted, f"{name}: resumed run differs")
        reloaded = killed._replace(model=keras.saving.load_model(path))
        model_zoo.fit(reloaded, EPOCHS, initial_epoch=1)
        self.assertSameState(_state(reloaded.model), uninterrupted, f"{name}: reloaded run differs")
        other_seed = _weights(_build(name, seed=8).model)
        self.assertFalse(
            all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(start, other_seed)),
            f"{name}: seeds 7 and 8 build the same weights",
        )
        return reloaded

    def check_nan(self, name, entry):
        if not model_zoo.has_float_inputs(entry.x):  # token ids only: no NaN to feed
            return
        counter = _CountBatches()
        before = _weights(entry.model)
        try:
            history = model_zoo.fit(
                entry, epochs=3, x=model_zoo.with_nan(entry.x), callbacks=[keras.callbacks.TerminateOnNaN(), counter]
            )
        except ValueError as error:  # refused up front: the message must say why, weights untouched
            self.assertIn("finite", str(error))
            self.assertEqual(counter.batches, 0)
            self.assertSameState(_weights(entry.model), before, f"{name}: refused data changed the weights")
            return
        self.assertEqual(counter.batches, 1, f"{name} trained on after a NaN loss")
        self.assertTrue(np.isnan(history.history["loss"][-1]), f"{name} logged {history.history['loss']} for NaN")
        history = model_zoo.fit(entry, epochs=1, steps_per_epoch=1)  # clean data, NaN weights
        if not _all_finite(entry.model):
            for key, values in history.history.items():
                if "loss" in key:
                    self.assertFalse(np.isfinite(values[-1]), f"{name} logs {key}={values[-1]} with NaN weights")

    def check_models(self, names):
        directory = self.get_temp_dir()
        manifest, self.expected = [], {}
        for name in names:
            with self.subTest(model=name):
                entry = _build(name)
                model_zoo.fit(entry, EPOCHS)
                manifest += self.export_and_predict(entry, name, directory)  # straight after fit
                reloaded = self.check_resume(name, os.path.join(directory, f"{name}_runs"), _state(entry.model))
                self.check_nan(name, reloaded)
        self.check_fresh_process_serving(manifest, directory)

    def check_fresh_process_serving(self, manifest, directory):
        manifest_path = os.path.join(directory, "manifest.json")
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, "-c", LOADER, manifest_path]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=directory)
        self.assertEqual(result.returncode, 0, result.stderr[-4000:])
        for row in manifest:
            outputs = np.load(row["outputs"])
            want = self.expected[row["name"]]
            if isinstance(want, dict):
                self.assertEqual(sorted(outputs.files), sorted(want), row["name"])
                for k in want:
                    self.assertAllClose(outputs[k], want[k], atol=1e-5, msg=f"{row['name']} {k}")
            else:
                self.assertLen(outputs.files, 1)
                self.assertAllClose(outputs[outputs.files[0]], want, atol=1e-5, msg=row["name"])

    # Two halves of the zoo, so that two CI workers share the work.
    def test_first_half_of_the_models(self):
        self.check_models(model_zoo.NAMES[::2])

    def test_second_half_of_the_models(self):
        self.check_models(model_zoo.NAMES[1::2])
