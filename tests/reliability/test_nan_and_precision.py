"""Every model under bad numbers and low precision.

- NaN in the inputs: training stops at the first batch under `TerminateOnNaN` (the
  logged loss is NaN), or the model refuses the data with a `ValueError` naming it.
- No model logs a finite loss while its weights are NaN.
- `mixed_float16` and `mixed_bfloat16`: one step with a finite loss, float32 outputs.
"""

import keras
import numpy as np
import tensorflow as tf

from tests import model_zoo
from tests.test_case import TestCase


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _all_finite(model):
    return all(np.all(np.isfinite(v.numpy())) for v in model.weights if np.issubdtype(np.dtype(v.dtype), np.floating))


class NaNTest(TestCase):
    def test_nan_inputs_stop_training_and_nan_weights_log_no_finite_loss(self):
        # One model per check pair: the NaN batch that stops training leaves NaN weights (or is
        # refused), and `fit` on clean data then must not log a finite loss.
        for name in model_zoo.NAMES:
            with self.subTest(model=name):
                entry = model_zoo.build(name)
                if not model_zoo.has_float_inputs(entry.x):  # token ids only: no NaN to feed
                    continue
                counter = _CountBatches()
                try:
                    history = model_zoo.fit(
                        entry,
                        epochs=3,
                        x=model_zoo.with_nan(entry.x),
                        callbacks=[keras.callbacks.TerminateOnNaN(), counter],
                    )
                except ValueError as error:  # refused up front: the message must say why, weights untouched
                    self.assertIn("finite", str(error))
                    self.assertEqual(counter.batches, 0)
                    self.assertTrue(_all_finite(entry.model))
                    continue
                self.assertEqual(counter.batches, 1, f"{name} trained on after a NaN loss")
                self.assertTrue(
                    np.isnan(history.history["loss"][-1]),
                    f"{name} logged loss {history.history['loss']} for NaN inputs",
                )
                history = model_zoo.fit(entry, epochs=1, steps_per_epoch=1)  # clean data, NaN weights
                if not _all_finite(entry.model):
                    for key, values in history.history.items():
                        if "loss" in key:
                            self.assertFalse(
                                np.isfinite(values[-1]), f"{name} logs {key}={values[-1]} with NaN weights"
                            )


class MixedPrecisionTest(TestCase):
    def test_every_model_trains_a_step_with_float32_outputs(self):
        for policy in ("mixed_float16", "mixed_bfloat16"):
            for name in model_zoo.NAMES:
                with self.subTest(model=name, policy=policy):
                    keras.config.set_dtype_policy(policy)
                    try:
                        entry = model_zoo.build(name)
                        history = model_zoo.fit(entry, epochs=1, steps_per_epoch=1)
                        outputs = entry.model.predict(entry.inputs(3), verbose=0)
                    finally:
                        keras.config.set_dtype_policy("float32")
                    for key, values in history.history.items():
                        self.assertTrue(np.all(np.isfinite(values)), f"{name} {policy}: {key}={values}")
                    for output in tf.nest.flatten(outputs):
                        self.assertEqual(
                            np.asarray(output).dtype,
                            np.float32,
                            f"{name} {policy}: output dtype {np.asarray(output).dtype}",
                        )
