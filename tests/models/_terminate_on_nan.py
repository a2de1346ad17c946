"""Shared check: `TerminateOnNaN` stops `fit` at the first broken batch, and no batch logs a
finite metric while the model's weights are not finite."""

import keras
import numpy as np


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        broken = any(not np.all(np.isfinite(np.asarray(v))) for v in self.model.trainable_weights)
        self.batches.append((batch, {k: float(v) for k, v in (logs or {}).items()}, broken))


def assert_terminates_on_nan(test, model, x, y=None, stop_batch=None, **fit_kwargs):
    """Runs `fit` (3 epochs, TerminateOnNaN) and checks:

    - training stopped at the first batch whose logged loss is not finite (and at
      `stop_batch` when given), after finite batches with finite weights;
    - every batch whose weights are not finite logs only non-finite values, and so does
      the history of the epoch it stopped in.

    Returns the recorded `(batch, logs, weights_broken)` list.
    """
    recorder = _Recorder()
    fit_kwargs.setdefault("shuffle", False)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), recorder], **fit_kwargs)
    batches = recorder.batches
    test.assertTrue(batches, "no batch ran")
    last_batch, last_logs, _ = batches[-1]
    test.assertFalse(np.isfinite(last_logs["loss"]), f"training did not stop on NaN: {batches}")
    if stop_batch is not None:
        test.assertEqual(len(batches), stop_batch + 1, f"stopped at batch {last_batch}: {batches}")
    for batch, logs, broken in batches[:-1]:
        test.assertFalse(broken, f"weights not finite at batch {batch} but training went on")
        test.assertTrue(np.isfinite(logs["loss"]), f"non-finite loss at batch {batch} went unnoticed")
    test.assertTrue(batches[-1][2], "weights finite at the stop: nothing was broken")
    for batch, logs, broken in batches:
        if broken:
            for name, value in logs.items():
                test.assertFalse(
                    np.isfinite(value), f"{name}={value} logged at batch {batch} while the weights are NaN"
                )
    for name, values in history.history.items():
        test.assertFalse(np.isfinite(values[-1]), f"history {name}={values[-1]} is finite")
    return batches
