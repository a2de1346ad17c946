"""The `keras-transfer` entry point: demo section and finetune job, with their errors."""

import os

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
        results = cli._demo(cli.build_parser().parse_args(["demo", "--quick", "--sections", "transfer",
                                                           "--output", out]))
        transfer = results["transfer"]
        self.assertEqual(set(transfer["target_accuracy"]),
                         {"from scratch", "linear probe", "fine-tune", "LP-FT"})
        self.assertTrue(os.path.exists(os.path.join(out, "transfer", "transfer.png")))
        self.assertTrue(os.path.exists(os.path.join(out, "transfer", "best_model", "saved_model.pb")))

    def test_demo_unknown_section(self):
        with self.assertRaises(SystemExit):
            cli.main(["demo", "--sections", "nope"])

    def test_finetune_folder_exports(self):
        root = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        out = self.get_temp_dir()
        code = cli.main(["finetune", "--data", root, "--backbone", "simple_cnn", "--epochs", "1",
                         "--batch-size", "8", "--export", os.path.join(out, "exp"),
                         "--save", os.path.join(out, "m.keras")])
        self.assertEqual(code, 0)
        self.assertTrue(os.path.exists(os.path.join(out, "exp", "saved_model.pb")))
        with open(os.path.join(out, "exp", "class_names.txt")) as handle:
            self.assertEqual(handle.read().split(), ["class0", "class1", "class2"])

    def test_finetune_errors_exit_2(self):
        self.assertEqual(cli.main(["finetune", "--data", "/nonexistent/folder"]), 2)
        single = os.path.join(self.get_temp_dir(), "single")
        _write_folder(single, classes=1)
        self.assertEqual(cli.main(["finetune", "--data", single, "--backbone", "simple_cnn"]), 2)
        root = _write_folder(os.path.join(self.get_temp_dir(), "ok"))
        self.assertEqual(cli.main(["finetune", "--data", root, "--backbone", "resnet5"]), 2)
