import os
from unittest import mock

import keras
import numpy as np
import pytest
from PIL import Image

from keras_transfer.recipes import finetune_job
from keras_transfer.recipes.finetune_job import check_output_paths
from keras_transfer.recipes.finetune_job import finetune_folder
from keras_transfer.recipes.finetune_job import parse_blocks
from keras_transfer.recipes.finetune_job import write_export
from keras_transfer.recipes.finetune_job import write_model_file
from tests.test_case import TestCase
from tests.test_case import snapshot_files


def _write_folder(root, classes=2, per_class=4, size=8):
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype="uint8")
            Image.fromarray(pixels).save(os.path.join(root, f"class{c}", f"{i}.png"))
    return root


def _tiny_model():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


class FinetuneJobTest(TestCase):
    def test_parse_blocks(self):
        self.assertEqual(parse_blocks(None), "all")
        for choice in ("all", "first", "middle", "last", "auto"):
            self.assertEqual(parse_blocks(f" {choice} "), choice)
        self.assertEqual(parse_blocks("block1, block3,"), ["block1", "block3"])

    def test_argument_errors_before_reading_data(self):
        folder = self.get_temp_dir()  # empty: the argument checks come first
        self.assertRaisesValueError(["`backbone`", "resnet5"], finetune_folder, folder, backbone="resnet5")
        self.assertRaisesValueError(["`epochs`", "epochs=-1"], finetune_folder, folder, epochs=-1)
        self.assertRaisesValueError(["`batch_size`", "batch_size=0"], finetune_folder, folder, batch_size=0)
        self.assertRaisesValueError(
            ["`validation_split`", "blocks='auto'", "validation_split=0"],
            finetune_folder,
            folder,
            blocks="auto",
            validation_split=0,
        )
        self.assertRaisesValueError(
            ["`validation_split`", "validation_split=1"], finetune_folder, folder, validation_split=1
        )
        self.assertRaisesValueError(["`image_size`", "image_size=0"], finetune_folder, folder, image_size=0)
        self.assertRaisesValueError(["`data`", "no images"], finetune_folder, folder, backbone="simple_cnn")
        self.assertRaisesValueError(
            ["`mixed_precision`", "float16"], finetune_folder, folder, mixed_precision="float16"
        )
        self.assertRaisesValueError(["`jit_compile`", "'on'"], finetune_folder, folder, jit_compile="on")

    @pytest.mark.compiled
    def test_mixed_precision(self):
        data = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        export = os.path.join(self.get_temp_dir(), "export")
        before = keras.config.dtype_policy().name
        model, summary = finetune_folder(
            data, backbone="simple_cnn", image_size=8, epochs=1, batch_size=4, export=export, verbose=0,
            mixed_precision="mixed_bfloat16",
        )  # fmt: skip
        self.assertEqual(keras.config.dtype_policy().name, before)  # the global policy is restored
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        conv = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
        self.assertEqual((conv.compute_dtype, conv.variable_dtype), ("bfloat16", "float32"))
        self.assertTrue(np.isfinite(summary["validation"]["loss"]))
        x = np.random.default_rng(3).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
        import tensorflow as tf

        loaded = tf.saved_model.load(export)  # keep a reference: its variables live on it
        scores = loaded.serve(tf.constant(x))["scores"].numpy()
        self.assertEqual(scores.dtype, np.float32)  # float32 head
        self.assertAllClose(scores, model.predict(x, verbose=0), atol=1e-5)

    def test_jit_compile_reaches_compile(self):
        data = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        for jit_compile in (True, False):
            model, _ = finetune_folder(
                data, backbone="simple_cnn", image_size=8, epochs=0, validation_split=0, verbose=0,
                jit_compile=jit_compile,
            )  # fmt: skip
            self.assertEqual(model.jit_compile, jit_compile)


class OutputPathTest(TestCase):
    """`export` / `save` are checked before training; a user's files are never replaced silently."""

    def setUp(self):
        super().setUp()
        self.root = self.get_temp_dir()
        self.a_file = os.path.join(self.root, "notes.txt")
        with open(self.a_file, "w") as handle:
            handle.write("mine")
        self.old_export = os.path.join(self.root, "old_export")
        os.makedirs(os.path.join(self.old_export, "variables"))
        for name in ("saved_model.pb", "variables/variables.index", "stale.txt"):
            with open(os.path.join(self.old_export, name), "w") as handle:
                handle.write("old")
        self.photos = os.path.join(self.root, "photos")
        os.makedirs(os.path.join(self.photos, "cat"))
        with open(os.path.join(self.photos, "cat", "0.png"), "w") as handle:
            handle.write("user file")
        self.before = snapshot_files(self.root)

    def tearDown(self):
        self.assertEqual(snapshot_files(self.root), self.before, "a check changed the user's files")
        self.assertEqual(sorted(os.listdir(self.root)), ["notes.txt", "old_export", "photos"])
        super().tearDown()

    def test_usable_paths_pass(self):
        check_output_paths(
            export=os.path.join(self.root, "new", "deep", "export"), save=os.path.join(self.root, "new", "model.keras")
        )
        empty = os.path.join(self.root, "photos", "..", "old_export", "..")
        check_output_paths(save=os.path.join(empty, "m.h5"))
        check_output_paths(export=self.old_export, save=self.a_file[:-4] + ".keras", overwrite=True)

    def test_save_errors(self):
        self.assertRaisesValueError(["`save`", "ending in .keras", "'m.keras'"], check_output_paths, save="m.pb")
        self.assertRaisesValueError(
            ["`save`", "folders can be created", "is a file"],
            check_output_paths,
            save=os.path.join(self.a_file, "m.keras"),
        )
        existing_dir = os.path.join(self.root, "dir.keras")
        os.makedirs(existing_dir)
        try:
            self.assertRaisesValueError(
                ["`save`", "not a folder"], check_output_paths, save=existing_dir, overwrite=True
            )
        finally:
            os.rmdir(existing_dir)
        existing = os.path.join(self.root, "notes.keras")
        with open(existing, "w") as handle:
            handle.write("mine")
        try:
            self.assertRaisesValueError(["`save`", "exists", "--overwrite"], check_output_paths, save=existing)
            check_output_paths(save=existing, overwrite=True)
        finally:
            os.remove(existing)

    def test_export_errors(self):
        self.assertRaisesValueError(
            ["`export`", "existing file"], check_output_paths, export=self.a_file, overwrite=True
        )
        self.assertRaisesValueError(
            ["`export`", "folders can be created"], check_output_paths, export=os.path.join(self.a_file, "export")
        )
        self.assertRaisesValueError(
            ["`export`", "new or empty", "saved_model.pb", "--overwrite"], check_output_paths, export=self.old_export
        )
        # --overwrite replaces a previous export only, never a folder of other files.
        self.assertRaisesValueError(
            ["`export`", "not an export", "Nothing was deleted"], check_output_paths, export=self.photos, overwrite=True
        )
        self.assertRaisesValueError(
            ["`export`", "outside the training data"],
            check_output_paths,
            export=os.path.join(self.photos, "model"),
            data=self.photos,
        )
        self.assertRaisesValueError(
            ["`export`", "outside the training data"],
            check_output_paths,
            export=self.root,
            data=self.photos,
            overwrite=True,
        )
        self.assertRaisesValueError(
            ["`save`", "outside the `export`"],
            check_output_paths,
            export=os.path.join(self.root, "e"),
            save=os.path.join(self.root, "e", "m.keras"),
        )

    def test_unwritable_location(self):
        if os.path.isdir("/proc/self"):  # a folder that even root cannot create files in
            self.assertRaisesValueError(
                ["`export`", "not writable"], check_output_paths, export="/proc/keras_transfer_export"
            )
        # Any other unwritable place (read-only mount, no permission): the probe file fails.
        denied = PermissionError(13, "Permission denied")
        with mock.patch.object(finetune_job.tempfile, "TemporaryFile", side_effect=denied):
            self.assertRaisesValueError(
                ["`save`", "not writable", "Permission denied"],
                check_output_paths,
                save=os.path.join(self.root, "new", "m.keras"),
            )


class FinetuneFolderOutputTest(TestCase):
    def test_bad_outputs_fail_before_training(self):
        data = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        blocker = os.path.join(self.get_temp_dir(), "file")
        with open(blocker, "w") as handle:
            handle.write("x")
        old_export = self.get_temp_dir()
        with open(os.path.join(old_export, "saved_model.pb"), "w") as handle:
            handle.write("old")
        cases = [
            (dict(save=os.path.join(blocker, "m.keras")), ["`save`", "is a file"]),
            (dict(save=os.path.join(self.get_temp_dir(), "m.h5x")), ["`save`", ".keras"]),
            (dict(export=blocker), ["`export`", "existing file"]),
            (dict(export=old_export), ["`export`", "--overwrite"]),
        ]
        for kwargs, fragments in cases:
            with (
                mock.patch.object(finetune_job, "fine_tune") as train,
                mock.patch.object(finetune_job, "load_image_folder") as read,
            ):
                self.assertRaisesValueError(fragments, finetune_folder, data, backbone="simple_cnn", **kwargs)
                train.assert_not_called()
                read.assert_not_called()

    def test_overwrite_replaces_previous_outputs_without_stale_files(self):
        data = _write_folder(os.path.join(self.get_temp_dir(), "imgs"))
        out = self.get_temp_dir()
        export, save = os.path.join(out, "export"), os.path.join(out, "model.keras")
        os.makedirs(os.path.join(export, "assets"))
        for name in ("saved_model.pb", "stale.txt", "assets/old_vocab.txt"):
            with open(os.path.join(export, name), "w") as handle:
                handle.write("old")
        with open(save, "w") as handle:
            handle.write("old model")
        model, summary = finetune_folder(
            data,
            backbone="simple_cnn",
            image_size=8,
            epochs=1,
            batch_size=4,
            validation_split=0,
            export=export,
            save=save,
            overwrite=True,
            verbose=0,
        )
        self.assertEqual(sorted(os.listdir(out)), ["export", "model.keras"])  # no temporary left over
        self.assertEqual(
            sorted(os.listdir(export)), ["assets", "class_names.txt", "fingerprint.pb", "saved_model.pb", "variables"]
        )
        self.assertEqual(os.listdir(os.path.join(export, "assets")), [])
        with open(os.path.join(export, "class_names.txt")) as handle:
            self.assertEqual(handle.read().split(), ["class0", "class1"])
        x = np.random.default_rng(3).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
        import tensorflow as tf

        loaded = tf.saved_model.load(export)  # keep a reference: its variables live on it
        served = loaded.serve(tf.constant(x))
        self.assertAllClose(served["scores"].numpy(), model.predict(x, verbose=0), atol=1e-5)
        self.assertEqual(served["classes"].numpy()[0].tolist(), [b"class0", b"class1"])
        # The bytes endpoint decodes PNGs inside the graph: same answer as predict on the pixels.
        pixels = np.round(x).astype("uint8")
        encoded = tf.stack([tf.io.encode_png(image) for image in pixels])
        by_bytes = loaded.signatures["serve_image_bytes"](image_bytes=encoded)["scores"].numpy()
        self.assertAllClose(by_bytes, model.predict(pixels.astype("float32"), verbose=0), atol=1e-5)
        reloaded = keras.saving.load_model(save)
        self.assertAllClose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
        self.assertEqual((summary["saved"], summary["exported"]), (save, export))


class WriteOutputsTest(TestCase):
    def test_failed_export_leaves_previous_folder(self):
        out = self.get_temp_dir()
        export = os.path.join(out, "export")
        os.makedirs(export)
        with open(os.path.join(export, "saved_model.pb"), "w") as handle:
            handle.write("old")
        model = _tiny_model()
        with mock.patch("tensorflow.saved_model.save", side_effect=RuntimeError("disk full")):
            with self.assertRaises(RuntimeError):
                write_export(model, export, ["a", "b"])
        self.assertEqual(os.listdir(out), ["export"])
        self.assertEqual(os.listdir(export), ["saved_model.pb"])

    def test_failed_save_leaves_previous_file(self):
        out = self.get_temp_dir()
        path = os.path.join(out, "m.keras")
        with open(path, "w") as handle:
            handle.write("old")
        model = _tiny_model()
        with mock.patch.object(model, "save", side_effect=OSError(28, "No space left on device")):
            with self.assertRaises(OSError):
                write_model_file(model, path)
        self.assertEqual(os.listdir(out), ["m.keras"])
        with open(path) as handle:
            self.assertEqual(handle.read(), "old")
        write_model_file(model, path)
        self.assertEqual(len(keras.saving.load_model(path).weights), 2)

    def test_export_over_a_symlink_leaves_the_linked_folder(self):
        out = self.get_temp_dir()
        linked = os.path.join(out, "linked")
        os.makedirs(linked)
        with open(os.path.join(linked, "saved_model.pb"), "w") as handle:
            handle.write("old")
        link = os.path.join(out, "export")
        os.symlink(linked, link)
        write_export(_tiny_model(), link, ["a", "b"])
        self.assertFalse(os.path.islink(link))
        self.assertIn("variables", os.listdir(link))
        self.assertEqual(sorted(os.listdir(out)), ["export", "linked"])
        self.assertEqual(os.listdir(linked), ["saved_model.pb"])
