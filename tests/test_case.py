"""The shared test harness of keras_transfer.

Every public layer, model and recipe is checked with the same steps:
shapes and weight counts, a `.keras` round trip without
`custom_objects` (values compared), `export()` serving signature vs `predict`,
two `fit` steps (finite metrics, trainable weights changed, frozen ones not),
one `mixed_float16` step, gradients against finite differences, and error
messages.

Usage::

    from tests.test_case import TestCase

    class MyLayerTest(TestCase):
        def test_basics(self):
            self.run_layer_test(MyLayer, {"units": 4}, input_shape=(2, 8),
                                expected_output_shape=(2, 8))
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import keras
import numpy as np
import tensorflow as tf

# The public subpackages of keras_transfer (what `keras_transfer.<name>` users import).
PUBLIC_SUBPACKAGES = (
    "augment",
    "callbacks",
    "datasets",
    "distribute",
    "layers",
    "losses",
    "models",
    "ops",
    "optimizers",
    "recipes",
    "schedules",
    "serving",
)


def snapshot_files(root):
    """{relative path: bytes} of every file under root: to show that nothing was touched."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_probe(script, *args, timeout=300):
    """Runs a probe script (one that prints `RESULT {json}`, e.g. with logical devices configured
    before TensorFlow starts) in a fresh Python process from the repository root.

    Returns:
        The JSON of the last `RESULT` line.

    Raises:
        AssertionError: with the tails of stdout and stderr, when no `RESULT` line was printed.
    """
    out = subprocess.run(
        [sys.executable, script, *args], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise AssertionError(f"probe {script} printed no RESULT:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


# Warning classes a fresh Python process does not print (its default filters).
_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_cli(argv, cwd=None, env=None):
    """Runs `keras_transfer.cli.main(argv)` in this process as the `keras-transfer` script would run.

    Costs no TensorFlow start-up (about 10 CPU-seconds per console-script process). Collected as
    the script's stderr: `sys.stderr`, file descriptor 2 (TensorFlow's C++ lines), the warnings a
    fresh Python prints (not Deprecation/Import/Resource warnings) and WARNING+ log records. An
    exception that escapes `main` gives its traceback and status 1, as the interpreter does.

    Args:
        argv: the arguments after `keras-transfer`.
        cwd: the working folder during the run (restored after).
        env: extra environment variables during the run (the environment is restored after);
            `KERAS_TRANSFER_VERBOSE_STDERR` is unset, as in the console-script tests.

    Returns:
        A `subprocess.CompletedProcess` with `returncode`, `stdout` and `stderr` (text).
    """
    import contextlib
    import io
    import logging
    import traceback
    import warnings
    from unittest import mock

    from keras_transfer import cli

    tf.get_logger()  # TensorFlow's own log handler takes the stderr it finds on first use: not this run's
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    previous_cwd = os.getcwd()
    with tempfile.TemporaryFile() as native_err, mock.patch.dict(os.environ, env or {}):
        os.environ.pop("KERAS_TRANSFER_VERBOSE_STDERR", None)
        sys.stderr.flush()
        saved_fd2 = os.dup(2)
        os.dup2(native_err.fileno(), 2)
        logging.getLogger().addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
                warnings.simplefilter("default")
                with contextlib.redirect_stderr(err):
                    os.chdir(cwd or previous_cwd)
                    try:
                        code = cli.main(list(argv))
                    except SystemExit as exit_:  # argparse's usage errors, a demo's unknown section
                        code = exit_.code
                        if code is not None and not isinstance(code, int):
                            print(code, file=err)  # as the interpreter does with a message
                            code = 1
                    except Exception:
                        traceback.print_exc(file=err)
                        code = 1
        finally:
            os.chdir(previous_cwd)
            logging.getLogger().removeHandler(handler)
            os.dup2(saved_fd2, 2)
            os.close(saved_fd2)
        native_err.seek(0)
        native = native_err.read().decode("utf-8", "replace")
    shown = [w for w in caught if not issubclass(w.category, _HIDDEN_BY_DEFAULT)]
    stderr = (
        native
        + err.getvalue()
        + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in shown)
    )
    return subprocess.CompletedProcess(["keras-transfer", *argv], code or 0, out.getvalue(), stderr)


def _other_integer_width(tensor):
    """An int32 tensor as int64 and vice versa; anything else unchanged (the same object)."""
    other = {tf.int32: tf.int64, tf.int64: tf.int32}.get(tensor.dtype)
    return tensor if other is None else tf.cast(tensor, other)


def _as_client_tensor(value):
    tensor = tf.convert_to_tensor(value)
    return tf.cast(tensor, "float32") if tensor.dtype.is_floating else tensor


class TestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        # As Keras's own TestCase: a fresh Keras global state per test (names, settings, caches); measured
        # about 8 % less time on the models and recipes tests.
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(1337)

    def tearDown(self):
        keras.config.set_dtype_policy("float32")
        super().tearDown()

    # ------------------------------------------------------------------ utils
    def get_temp_dir(self):
        path = tempfile.mkdtemp(prefix="keras_transfer_test_")
        self.addCleanup(lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def assertAllClose(self, actual, desired, atol=1e-6, rtol=1e-6, msg=None):
        actual = keras.ops.convert_to_numpy(actual) if not isinstance(actual, np.ndarray) else actual
        desired = keras.ops.convert_to_numpy(desired) if not isinstance(desired, np.ndarray) else desired
        np.testing.assert_allclose(actual, desired, atol=atol, rtol=rtol, err_msg=msg or "")

    def assertNotAllClose(self, actual, desired, atol=1e-6, rtol=1e-6, msg=None):
        actual = np.asarray(keras.ops.convert_to_numpy(actual))
        desired = np.asarray(keras.ops.convert_to_numpy(desired))
        if actual.shape == desired.shape and np.allclose(actual, desired, atol=atol, rtol=rtol):
            raise AssertionError(msg or f"Arrays are unexpectedly equal: {actual}")

    def assertRaisesValueError(self, fragments, fn, *args, **kwargs):
        """`fn(*args, **kwargs)` raises ValueError whose text holds every fragment."""
        if isinstance(fragments, str):
            fragments = [fragments]
        with self.assertRaises(ValueError) as ctx:
            fn(*args, **kwargs)
        message = str(ctx.exception)
        for fragment in fragments:
            self.assertIn(fragment, message, f"'{fragment}' missing from error: {message}")
        return message

    # ----------------------------------------------------------- model steps
    def run_serialization_test(self, model, x, atol=1e-6, rtol=1e-6, compare_config=True, export_reloaded=False):
        """Saves to `.keras`, reloads WITHOUT custom_objects, compares outputs and weights.

        With `export_reloaded=True` the reloaded model is exported straight away (nothing
        called on it first, as users do) and its serving signature must answer as `predict`.
        """
        directory = self.get_temp_dir()
        path = os.path.join(directory, "model.keras")
        expected = model.predict(x, verbose=0)
        model.save(path)
        reloaded = keras.saving.load_model(path)
        if export_reloaded:
            reloaded.export(os.path.join(directory, "after_reload"), verbose=False)
        self.assertEqual(type(reloaded), type(model))
        actual = reloaded.predict(x, verbose=0)
        tf.nest.map_structure(lambda a, b: self.assertAllClose(a, b, atol=atol, rtol=rtol), actual, expected)
        self.assertEqual(len(reloaded.weights), len(model.weights))
        for w1, w2 in zip(model.weights, reloaded.weights):
            self.assertAllClose(w2, w1, atol=0, rtol=0, msg=f"weight {w1.path} differs")
        if compare_config:
            self.assertEqual(
                keras.saving.serialize_keras_object(reloaded)["config"].keys(),
                keras.saving.serialize_keras_object(model)["config"].keys(),
            )
        if export_reloaded:
            tolerance = {"atol": max(atol, 1e-5), "rtol": max(rtol, 1e-5)}  # as `run_export_test`
            self.assertExportMatchesPredict(os.path.join(directory, "after_reload"), reloaded, x, **tolerance)
        return reloaded

    def run_export_test(self, model, x, atol=1e-5, rtol=1e-5):
        """`model.export()` then the `serve` endpoint must equal `predict`."""
        path = os.path.join(self.get_temp_dir(), "exported")
        model.export(path, verbose=False)
        return self.assertExportMatchesPredict(path, model, x, atol=atol, rtol=rtol)

    def assertExportMatchesPredict(self, path, model, x, atol=1e-5, rtol=1e-5):
        """The SavedModel at `path` answers `x` as `model.predict(x)` does.

        `x` is sent as a client sends it: floats as float32, integers and strings
        with their own dtype (no cast to the signature's), so an export that
        declares integer ids as float32 fails here as it would for a serving client.
        """
        restored = tf.saved_model.load(path)
        expected = model.predict(x, verbose=0)
        sent = tf.nest.map_structure(_as_client_tensor, x)
        try:
            actual = restored.serve(sent)
        except (TypeError, ValueError):  # Keras 3.13 exports single-input functionals as serve([x])
            actual = restored.serve(tf.nest.flatten(sent))
        tf.nest.map_structure(
            lambda a, b: self.assertAllClose(np.asarray(a), b, atol=atol, rtol=rtol),
            actual,
            expected,
        )
        other = tf.nest.map_structure(_other_integer_width, sent)
        changed = any(a is not b for a, b in zip(tf.nest.flatten(other), tf.nest.flatten(sent)))
        if hasattr(model, "serving_input_signature") and changed:
            # Our models' `serve` takes integer ids as int32 and int64, as `predict` does.
            tf.nest.map_structure(
                lambda a, b: self.assertAllClose(np.asarray(a), b, atol=atol, rtol=rtol),
                restored.serve(other),
                expected,
            )
        # The signature TF Serving calls (keyword inputs, same on every Keras version).
        self.assertIn("serving_default", restored.signatures)
        signature = restored.signatures["serving_default"]
        _, specs = signature.structured_input_signature
        if len(specs) == 1 and isinstance(expected, np.ndarray):
            ((name, spec),) = specs.items()
            value = tf.nest.flatten(sent)[0]
            self.assertEqual(
                spec.dtype, value.dtype, f"serving input {name!r} is {spec.dtype.name}; users send {value.dtype.name}"
            )
            outputs = signature(**{name: value})
            self.assertLen(outputs, 1)
            self.assertAllClose(np.asarray(next(iter(outputs.values()))), expected, atol=atol, rtol=rtol)
        return restored

    def run_fit_then_export_test(self, build_and_compile, fit_x, x, fit_y=None, batch_size=None, atol=1e-5, rtol=1e-5):
        """The order users take: build, `fit`, `export()` with nothing called in between;
        then `.keras` save, reload, `export()` again straight away. Both exports must
        answer as `predict` does (`x` sent with its own dtypes).

        `build_and_compile()` returns a fresh compiled model that has never been called.
        """
        model = build_and_compile()
        model.fit(fit_x, fit_y, batch_size=batch_size, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        directory = self.get_temp_dir()
        after_fit = os.path.join(directory, "after_fit")
        model.export(after_fit, verbose=False)
        keras_path = os.path.join(directory, "model.keras")
        model.save(keras_path)
        reloaded = keras.saving.load_model(keras_path)
        after_reload = os.path.join(directory, "after_reload")
        reloaded.export(after_reload, verbose=False)
        self.assertExportMatchesPredict(after_fit, model, x, atol=atol, rtol=rtol)
        self.assertExportMatchesPredict(after_reload, reloaded, x, atol=atol, rtol=rtol)
        return model, reloaded

    def run_fit_test(self, model, x, y=None, batch_size=None, steps=2, frozen=(), unchanged_ok=()):
        """Runs `steps` fit steps: finite metrics, trainable weights move, `frozen` ones do not.

        `frozen` is a list of variables (or layers) that must not change;
        `unchanged_ok` lists trainable variables allowed not to move (no gradient path).
        """
        frozen_vars = []
        for item in frozen:
            frozen_vars.extend(item.weights if isinstance(item, keras.layers.Layer) else [item])
        ok_ids = {id(v) for v in unchanged_ok}
        before = {id(v): np.array(v.numpy()) for v in model.trainable_weights + frozen_vars}
        # One batch per epoch, `steps` epochs: works for arrays and finite datasets alike.
        history = model.fit(x, y, batch_size=batch_size, epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False)
        for name, values in history.history.items():
            self.assertTrue(np.all(np.isfinite(values)), f"metric {name} is not finite: {values}")
        for v in model.trainable_weights:
            if id(v) in ok_ids:
                continue
            self.assertFalse(np.array_equal(before[id(v)], v.numpy()), f"trainable weight {v.path} did not change")
        for v in frozen_vars:
            self.assertTrue(np.array_equal(before[id(v)], v.numpy()), f"frozen weight {v.path} changed")
        return history

    def run_mixed_precision_test(self, build_and_compile, x, y=None, batch_size=None, steps=1):
        """Builds under `mixed_float16` and runs `steps` fit steps: the loss must stay finite."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            model = build_and_compile()
            history = model.fit(x, y, batch_size=batch_size, epochs=steps, steps_per_epoch=1, verbose=0, shuffle=False)
        finally:
            keras.config.set_dtype_policy(previous)
        for name, values in history.history.items():
            self.assertTrue(np.all(np.isfinite(values)), f"mixed_float16 metric {name} not finite")
        return model, history

    def run_gradient_check(self, fn, inputs, eps=1e-4, atol=1e-4, rtol=1e-3):
        """Compares `tf.GradientTape` gradients of scalar `fn(*inputs)` with central differences.

        `inputs` are NumPy arrays; they are cast to float64 so the finite differences are exact
        enough to be an independent reference.
        """
        inputs = [np.asarray(v, dtype="float64") for v in inputs]
        tensors = [tf.Variable(v) for v in inputs]
        with tf.GradientTape() as tape:
            value = fn(*tensors)
        analytic = tape.gradient(value, tensors)
        # Embedding lookups give IndexedSlices gradients: densify them for the comparison.
        analytic = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in analytic]
        for index, (base, grad) in enumerate(zip(inputs, analytic)):
            self.assertIsNotNone(grad, f"no gradient reaches input {index}")
            numeric = np.zeros_like(base)
            flat = numeric.reshape(-1)
            for j in range(base.size):
                plus, minus = base.copy().reshape(-1), base.copy().reshape(-1)
                plus[j] += eps
                minus[j] -= eps
                args_p = [tf.constant(v) for v in inputs]
                args_m = [tf.constant(v) for v in inputs]
                args_p[index] = tf.constant(plus.reshape(base.shape))
                args_m[index] = tf.constant(minus.reshape(base.shape))
                flat[j] = (float(fn(*args_p)) - float(fn(*args_m))) / (2 * eps)
            self.assertAllClose(
                np.asarray(grad),
                numeric,
                atol=atol,
                rtol=rtol,
                msg=f"gradient of input {index} differs from finite differences",
            )

    # ------------------------------------------------------------ layer test
    def run_layer_test(
        self,
        layer_cls,
        init_kwargs,
        input_shape,
        expected_output_shape=None,
        expected_num_trainable_weights=None,
        expected_num_non_trainable_weights=None,
        input_data=None,
        run_training=True,
        run_mixed_precision=True,
        run_export=True,
        supports_masking=None,
    ):
        """The full set of checks for a layer with a single tensor input."""
        rng = np.random.default_rng(0)
        x = input_data if input_data is not None else rng.normal(size=input_shape).astype("float32")

        layer = layer_cls(**init_kwargs)
        config = layer.get_config()
        clone = layer_cls.from_config(config)
        self.assertEqual(clone.get_config(), config)

        y = layer(x)
        if expected_output_shape is not None:
            self.assertEqual(tuple(y.shape), tuple(expected_output_shape))
            self.assertEqual(tuple(layer.compute_output_shape(tuple(input_shape))), tuple(expected_output_shape))
        if expected_num_trainable_weights is not None:
            self.assertLen(layer.trainable_weights, expected_num_trainable_weights)
        if expected_num_non_trainable_weights is not None:
            self.assertLen(layer.non_trainable_weights, expected_num_non_trainable_weights)
        self.assertTrue(np.all(np.isfinite(keras.ops.convert_to_numpy(y))))

        def build_model():
            inputs = keras.Input(shape=input_shape[1:])
            outputs = layer_cls(**init_kwargs)(inputs)
            model = keras.Model(inputs, outputs)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
            return model

        model = build_model()
        target = rng.normal(size=model.output_shape[:1] and (input_shape[0],) + tuple(model.output_shape[1:])).astype(
            "float32"
        )
        if run_training and model.trainable_weights:
            # Move the weights away from their (possibly identity) initialisation first.
            self.run_fit_test(model, x, target, batch_size=input_shape[0], steps=2)
        self.run_serialization_test(model, x)
        if run_export:
            self.run_export_test(model, x)
        if run_mixed_precision:
            self.run_mixed_precision_test(build_model, x, target, batch_size=input_shape[0])
        return layer

    def assertLen(self, container, expected):
        self.assertEqual(len(container), expected, f"expected length {expected}, got {len(container)}")
