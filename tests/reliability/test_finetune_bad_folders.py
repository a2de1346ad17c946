"""`keras-transfer finetune` on bad folders, run as a user runs it.

Every bad input ends with exit status 2, one line on stderr ("keras-transfer: error: ..." saying
what to do), no traceback, and the user's files unchanged (checked after every run). Images with
alpha or a palette train. Two cases run the installed console script in a fresh process (about
10 CPU-seconds each, mostly importing TensorFlow): the offline ImageNet download (`KERAS_HOME`
read by a fresh Keras) and the training run. The others call the script's own `cli.main` in this
process (`tests.test_case.run_cli`: same arguments, working folder and environment; its stderr
includes file descriptor 2, printed warnings and log records).
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from keras_transfer import cli
from tests.test_case import TestCase
from tests.test_case import run_cli
from tests.test_case import snapshot_files

TINY = ["--backbone", "simple_cnn", "--image-size", "8", "--epochs", "1", "--batch-size", "4"]


def _png(path, seed, mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    if mode == "RGBA":
        image = Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype="uint8"), mode="RGBA")
    else:
        image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype="uint8"))
        if mode == "P":
            image = image.convert("P", palette=Image.ADAPTIVE, colors=8)
    image.save(path)


def _truncated_jpeg(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype="uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) * 3 // 5])


def _class_folder(root, classes=("cat", "dog"), per_class=4, mode="RGB"):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(os.path.join(root, name, f"{i}.png"), seed=10 * c + i, mode=mode)
    return root


def _build_tree(root):
    """The users' folders, all under `root`."""
    os.makedirs(os.path.join(root, "empty"))
    _class_folder(os.path.join(root, "one_class"), classes=("cat",))
    _truncated_jpeg(os.path.join(_class_folder(os.path.join(root, "corrupt")), "dog", "cut.jpg"))
    with open(os.path.join(_class_folder(os.path.join(root, "web_page")), "cat", "download.jpg"), "w") as handle:
        handle.write("<html><body>403 Forbidden</body></html>")
    _class_folder(os.path.join(root, "split", "train"), classes=("cat", "dog", "fox"))
    _class_folder(os.path.join(root, "split", "val"), classes=("cat", "dog"), per_class=2)
    _class_folder(os.path.join(root, "alpha_palette"), classes=("cat",), mode="RGBA")
    _class_folder(os.path.join(root, "alpha_palette"), classes=("dog",), mode="P")
    with open(os.path.join(root, "alpha_palette", "dog", "notes.txt"), "w") as handle:
        handle.write("not an image: ignored and listed")
    _class_folder(os.path.join(root, "good"))
    os.makedirs(os.path.join(root, "old_export", "variables"))
    for name in ("saved_model.pb", "variables/variables.index", "notes.txt"):
        with open(os.path.join(root, "old_export", name), "w") as handle:
            handle.write(f"previous {name}")
    with open(os.path.join(root, "model.keras"), "w") as handle:
        handle.write("previous model")
    os.makedirs(os.path.join(root, "holiday_photos"))
    with open(os.path.join(root, "holiday_photos", "beach.jpg"), "w") as handle:
        handle.write("a photo")


CASES = {
    "empty": ["--data", "empty"],
    "one_class": ["--data", "one_class"],
    "corrupt": ["--data", "corrupt"],
    "web_page": ["--data", "web_page"],
    "split": ["--data", "split"],
    "alpha_palette": ["--data", "alpha_palette", "--validation-split", "0"],
    "missing": ["--data", "no_such_folder"],
    "export_exists": ["--data", "good", "--export", "old_export"],
    "save_exists": ["--data", "good", "--save", "model.keras"],
    "overwrite_not_export": ["--data", "good", "--export", "holiday_photos", "--overwrite"],
    "unwritable_export": ["--data", "good", "--export", os.path.join("model.keras", "export")],
    "unknown_backbone": ["--data", "good", "--backbone", "resnet5"],
    "imagenet_offline": [
        "--data",
        "good",
        "--backbone",
        "mobilenet_v3_small",
        "--weights",
        "imagenet",
        "--image-size",
        "224",
    ],
}


# The cases run through the installed console script; the others run in this process.
CONSOLE_SCRIPT_CASES = ("imagenet_offline", "alpha_palette")


def _console_script():
    path = os.path.join(os.path.dirname(sys.executable), "keras-transfer")
    return path if os.path.exists(path) else shutil.which("keras-transfer")


class FinetuneBadFoldersTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="keras_transfer_bad_folders_")
        cls.addClassCleanup(shutil.rmtree, cls.root, ignore_errors=True)
        _build_tree(cls.root)
        cls.before = snapshot_files(cls.root)
        cls.keras_home = tempfile.mkdtemp(prefix="keras_transfer_keras_home_")  # no cached weights
        cls.addClassCleanup(shutil.rmtree, cls.keras_home, ignore_errors=True)

    def run_case(self, name):
        """Runs `keras-transfer finetune` on one case from the users' folder; their files stay as they were."""
        # Later flags win in argparse: the case's own --backbone/--image-size override TINY's.
        argv = ["finetune", *TINY, *CASES[name]]
        env = {"KERAS_TRANSFER_OFFLINE": "1", "KERAS_HOME": self.keras_home}
        if name in CONSOLE_SCRIPT_CASES:
            script = _console_script()
            if script is None:
                self.skipTest("the keras-transfer console script is not installed (pip install -e .)")
            full_env = dict(os.environ, **env)
            full_env.pop("KERAS_TRANSFER_VERBOSE_STDERR", None)
            result = subprocess.run(
                [script, *argv], cwd=self.root, env=full_env, capture_output=True, text=True, timeout=300
            )
        else:
            result = run_cli(argv, cwd=self.root, env=env)
        self.assertEqual(snapshot_files(self.root), self.before, f"{name}: the user's files changed")
        return result

    def assertOneLineError(self, name, *fragments):
        result = self.run_case(name)
        self.assertNotIn("Traceback", result.stderr)
        # TensorFlow's own start-up lines are the CLI's concern (tests/test_cli.py), not this file's.
        lines = [line for line in result.stderr.splitlines() if not cli.STARTUP_NOISE.search(line)]
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("keras-transfer: error: "), lines[0])
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        return lines[0]

    def test_empty_folder(self):
        self.assertOneLineError("empty", "'empty'", "no images", "one sub-folder of images per class")

    def test_one_class(self):
        self.assertOneLineError("one_class", "at least 2 classes", "['cat']", "Add a folder per class")

    def test_corrupted_image(self):
        self.assertOneLineError(
            "corrupt", os.path.join("corrupt", "dog", "cut.jpg"), "truncated", "Remove or re-encode"
        )

    def test_non_image_file_with_image_name(self):
        self.assertOneLineError("web_page", os.path.join("web_page", "cat", "download.jpg"), "not an image")

    def test_split_missing_a_class(self):
        self.assertOneLineError("split", "split 'val'", "['fox']", os.path.join("split", "val", "fox"))

    def test_alpha_and_palette_images_train(self):
        result = self.run_case("alpha_palette")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertIn("Classes: cat, dog", result.stdout)
        self.assertIn("Examples: train 8", result.stdout)
        self.assertIn(
            f"Ignored 1 file(s) that are not .png/.jpg/.jpeg/.bmp/.gif images: "
            f"{os.path.join('alpha_palette', 'dog', 'notes.txt')}",
            result.stdout,
        )

    def test_missing_path(self):
        self.assertOneLineError("missing", "`data` must be an existing folder", "no_such_folder")

    def test_export_target_holds_files(self):
        self.assertOneLineError("export_exists", "`export`", "old_export", "--overwrite")

    def test_save_target_exists(self):
        self.assertOneLineError("save_exists", "`save`", "model.keras", "--overwrite")

    def test_overwrite_never_deletes_a_folder_that_is_not_an_export(self):
        self.assertOneLineError("overwrite_not_export", "holiday_photos", "not an export", "Nothing was deleted")

    def test_unusable_export_path(self):
        self.assertOneLineError("unwritable_export", "`export`", "is a file, not a folder")

    def test_unknown_backbone(self):
        self.assertOneLineError("unknown_backbone", "`backbone`", "resnet5", "Did you mean")

    def test_imagenet_weights_offline(self):
        self.assertOneLineError("imagenet_offline", "cannot download", "Cache folder", "weights=None")
