"""The `keras-transfer` entry point: demo section and finetune job, with their errors."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
from PIL import Image

from keras_transfer import cli
from keras_transfer import datasets
from tests.test_case import TestCase


def _write_folder(root, classes=3, per_class=8, size=16):
    (x, y), _ = datasets.load_digits(size, 3)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
        for i, index in enumerate(np.flatnonzero(y == c)[:per_class]):
            Image.fromarray(x[index]).save(os.path.join(root, f"class{c}", f"{i}.png"))
    return root


class CliTest(TestCase):
    def test_demo_transfer_quick(self):
        out = self.get_temp_dir()
        results = cli._demo(
            cli.build_parser().parse_args(["demo", "--quick", "--sections", "transfer", "--output", out])
        )
        transfer = results["transfer"]
        self.assertEqual(set(transfer["target_accuracy"]), {"from scratch", "linear probe", "fine-tune", "LP-FT"})
        self.assertTrue(os.path.exists(os.path.join(out, "transfer", "transfer.png")))
        self.assertTrue(os.path.exists(os.path.join(out, "transfer", "best_model", "saved_model.pb")))

    def test_demo_unknown_section(self):
        with self.assertRaises(SystemExit):
            cli.main(["demo", "--sections", "nope"])

    def test_finetune_folder_exports_then_overwrites(self):
        root = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        out = self.get_temp_dir()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli.main(
                ["finetune", "--data", root, *"--backbone simple_cnn --epochs 1 --batch-size 8 --blocks auto".split()]
                + ["--export", os.path.join(out, "exp"), "--save", os.path.join(out, "m.keras")]
            )
        self.assertEqual(code, 0)
        self.assertRegex(
            printed.getvalue(), r"Fine-tuned blocks: (first|middle|last|all) \(validation accuracy: first "
        )
        self.assertTrue(os.path.exists(os.path.join(out, "exp", "saved_model.pb")))
        with open(os.path.join(out, "exp", "class_names.txt")) as handle:
            self.assertEqual(handle.read().split(), ["class0", "class1", "class2"])

        # A second run refuses to replace that export (checked before training), then --overwrite does.
        export = os.path.join(out, "exp")
        with open(os.path.join(export, "stale.txt"), "w") as handle:
            handle.write("old")
        small = _write_folder(os.path.join(self.get_temp_dir(), "small"), classes=2, per_class=4)
        argv = ["finetune", "--data", small, "--export", export]
        argv += "--backbone simple_cnn --epochs 1 --batch-size 4 --validation-split 0".split()
        with mock.patch("sys.stderr", new=io.StringIO()) as err:
            self.assertEqual(cli.main(argv), 2)
        self.assertIn("--overwrite", err.getvalue())
        self.assertIn("stale.txt", os.listdir(export))
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(cli.main(argv + ["--overwrite"]), 0)
        self.assertNotIn("stale.txt", os.listdir(export))
        self.assertIn("saved_model.pb", os.listdir(export))

    def test_finetune_errors_exit_2(self):
        self.assertEqual(cli.main(["finetune", "--data", "/nonexistent/folder"]), 2)
        single = os.path.join(self.get_temp_dir(), "single")
        _write_folder(single, classes=1)
        self.assertEqual(cli.main(["finetune", "--data", single, "--backbone", "simple_cnn"]), 2)
        root = _write_folder(os.path.join(self.get_temp_dir(), "ok"))
        self.assertEqual(cli.main(["finetune", "--data", root, "--backbone", "resnet5"]), 2)


_STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796462181.639993   11962 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "E0000 00:00:1796462195.103418   11962 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1732000000.000000    1234 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to "
    "register factory for plugin cuDNN when one has already been registered",
    "W0000 00:00:1732000000.000000    1234 computation_placer.cc:177] computation placer already registered. "
    "Please check linkage and avoid linking the same target more than once.",
    "I tensorflow/core/util/port.cc:153] oneDNN custom operations are on. You may see slightly different "
    "numerical results due to floating-point round-off errors from different computation orders.",
    "E0000 00:00:1796469510.528220   24616 jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 30/64",
]
_KEPT_LINES = [
    # A GPU machine whose driver is broken: the user must see it.
    "E0000 00:00:1796462195.103418   11962 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE: "
    "no CUDA-capable device is detected",
    "Traceback (most recent call last):",
    "UserWarning: something the user should read",
    "keras-transfer: error: `data` must be an existing folder. Received: data='x'",
]

# Runs the filter the way the console script does: cli.py imports only the standard library,
# so it is loaded by path here and started before anything else.
_FILTER_SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("cli_under_test", sys.argv[1])
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)
cli.quiet_native_stderr()
for line in sys.argv[2:]:
    os.write(2, (line + "\\n").encode())  # as C++ writes: straight to file descriptor 2
print("python line", file=sys.stderr)
cli._stop_quiet_native_stderr()
os.write(2, b"after stop\\n")
"""


class CliStderrTest(TestCase):
    def test_startup_noise_patterns(self):
        for line in _STARTUP_LINES:
            self.assertRegex(line, cli.STARTUP_NOISE)
        for line in _KEPT_LINES:
            self.assertNotRegex(line, cli.STARTUP_NOISE)

    def test_filter_drops_noise_keeps_the_rest_in_order(self):
        lines = [_STARTUP_LINES[0], _KEPT_LINES[0], _STARTUP_LINES[1], _KEPT_LINES[2], _STARTUP_LINES[2]]
        result = subprocess.run(
            [sys.executable, "-c", _FILTER_SCRIPT, cli.__file__, *lines],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env_without_verbose(),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.splitlines(), [_KEPT_LINES[0], _KEPT_LINES[2], "python line", "after stop"])

    def test_filter_can_be_turned_off(self):
        env = dict(_env_without_verbose(), KERAS_TRANSFER_VERBOSE_STDERR="1")
        result = subprocess.run(
            [sys.executable, "-c", _FILTER_SCRIPT, cli.__file__, _STARTUP_LINES[0]],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        self.assertEqual(result.stderr.splitlines(), [_STARTUP_LINES[0], "python line", "after stop"])

    def test_library_import_does_not_touch_stderr(self):
        # A library user's process: file descriptor 2 stays what it was (no pipe, no filter).
        script = "import os, stat, keras_transfer; print(stat.S_ISFIFO(os.fstat(2).st_mode))"
        with tempfile.TemporaryFile() as stderr:
            result = subprocess.run(
                [sys.executable, "-c", script],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=120,
                env=_env_without_verbose(),
            )
        self.assertEqual(result.stdout.strip(), "False")

    def test_console_script_stderr_is_clean(self):
        import keras_transfer

        with open(keras_transfer.__file__) as handle:
            if "quiet_native_stderr" not in handle.read():
                self.skipTest(
                    "keras_transfer/__init__.py does not yet start cli.quiet_native_stderr() "
                    "before TensorFlow is imported, so the import-time lines still print"
                )
        script = _console_script()
        if script is None:
            self.skipTest("the keras-transfer console script is not installed (pip install -e .)")
        # The user's whole path in one fresh process: train, then export.
        root = _write_folder(os.path.join(self.get_temp_dir(), "imgs"), classes=2, per_class=4, size=8)
        export = os.path.join(self.get_temp_dir(), "exp")
        result = subprocess.run(
            [script, "finetune", "--data", root, "--export", export]
            + "--backbone simple_cnn --epochs 1 --batch-size 4 --validation-split 0".split(),
            capture_output=True,
            text=True,
            timeout=300,
            env=_env_without_verbose(),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        self.assertIn(f"exported: {export}", result.stdout)
        self.assertTrue(os.path.exists(os.path.join(export, "saved_model.pb")))
        with open(os.path.join(export, "class_names.txt")) as handle:
            self.assertEqual(handle.read().split(), ["class0", "class1"])


class CliErrorTest(TestCase):
    def test_os_error_is_one_line_exit_2(self):
        parser = cli.build_parser()
        args = parser.parse_args(["finetune", "--data", "x"])
        error = PermissionError(13, "Permission denied", "/data/out")
        with mock.patch.object(cli, "build_parser") as build, mock.patch("sys.stderr", new=io.StringIO()) as err:
            build.return_value.parse_args.return_value = args
            args.func = mock.Mock(side_effect=error)
            self.assertEqual(cli.main([]), 2)
        self.assertEqual(err.getvalue(), "keras-transfer: error: [Errno 13] Permission denied: '/data/out'\n")

    def test_multi_line_message_printed_on_one_line(self):
        args = cli.build_parser().parse_args(["finetune", "--data", "x"])
        args.func = mock.Mock(side_effect=ValueError("first line\n  second line"))
        with mock.patch.object(cli, "build_parser") as build, mock.patch("sys.stderr", new=io.StringIO()) as err:
            build.return_value.parse_args.return_value = args
            self.assertEqual(cli.main([]), 2)
        self.assertEqual(err.getvalue(), "keras-transfer: error: first line second line\n")

    def test_interrupt_exit_130(self):
        args = cli.build_parser().parse_args(["finetune", "--data", "x"])
        args.func = mock.Mock(side_effect=KeyboardInterrupt())
        with mock.patch.object(cli, "build_parser") as build, mock.patch("sys.stderr", new=io.StringIO()) as err:
            build.return_value.parse_args.return_value = args
            self.assertEqual(cli.main([]), 130)
        self.assertEqual(err.getvalue(), "keras-transfer: interrupted\n")

    def test_overwrite_flag(self):
        parser = cli.build_parser()
        self.assertFalse(parser.parse_args(["finetune", "--data", "x"]).overwrite)
        self.assertTrue(parser.parse_args(["finetune", "--data", "x", "--overwrite"]).overwrite)

    def test_mixed_precision_and_jit_compile_flags(self):
        parser = cli.build_parser()
        calls = []
        summary = {"ignored": [], "class_names": ["a", "b"], "num_train": 1, "num_validation": 0, "num_test": 0}

        def fake(*args, **kwargs):
            calls.append(kwargs)
            return None, summary

        with mock.patch("keras_transfer.recipes.finetune_job.finetune_folder", fake), mock.patch("sys.stdout"):
            for flags in ([], ["--mixed-precision", "bfloat16", "--jit-compile", "off"], ["--jit-compile", "on"]):
                args = parser.parse_args(["finetune", "--data", "x", *flags])
                args.func(args)
        self.assertEqual(
            [(c["mixed_precision"], c["jit_compile"]) for c in calls],
            [(None, "auto"), ("mixed_bfloat16", False), (None, True)],
        )
        with mock.patch("sys.stderr", new=io.StringIO()), self.assertRaises(SystemExit):
            parser.parse_args(["finetune", "--data", "x", "--mixed-precision", "mixed_float16"])


def _env_without_verbose():
    env = dict(os.environ)
    env.pop("KERAS_TRANSFER_VERBOSE_STDERR", None)
    return env


def _console_script():
    """The installed `keras-transfer` entry point of this Python."""
    path = os.path.join(os.path.dirname(sys.executable), "keras-transfer")
    return path if os.path.exists(path) else shutil.which("keras-transfer")
