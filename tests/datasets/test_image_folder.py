import os

import numpy as np
from PIL import Image

from keras_transfer.datasets import load_image_folder
from keras_transfer.datasets.image_folder import scan_image_folder
from tests.test_case import TestCase


def _write_png(path, size=(8, 8), value=0, mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    array = np.full((size[0], size[1], channels), value, dtype="uint8")
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode).save(path)


class ImageFolderTest(TestCase):
    def make_folder(self, classes=("cat", "dog"), per_class=5, size=(8, 8), prefix=""):
        root = self.get_temp_dir()
        for c, name in enumerate(classes):
            for i in range(per_class):
                _write_png(os.path.join(root, prefix, name, f"{i}.png"), size, value=40 * (c + 1))
        return root

    def test_class_layout_with_validation_split(self):
        root = self.make_folder(per_class=5)
        data = load_image_folder(root, batch_size=4, validation_split=0.2)
        self.assertEqual(data.class_names, ["cat", "dog"])
        self.assertEqual(data.image_size, (8, 8))
        self.assertEqual((data.num_train, data.num_validation, data.num_test), (8, 2, 0))
        self.assertIsNone(data.test)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data.train])
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.assertEqual(x.shape, (8, 8, 8, 3))
        self.assertEqual(x.dtype, np.float32)
        # Pixel values are the raw [0, 255] ones we wrote: 40 for "cat" (label 0), 80 for "dog".
        np.testing.assert_allclose(x[:, 0, 0, 0], np.where(y == 0, 40.0, 80.0))
        self.assertEqual(sum(len(b[1]) for b in data.validation), 2)

    def test_split_layout(self):
        root = self.get_temp_dir()
        for split, n in (("train", 3), ("val", 2), ("test", 1)):
            for c, name in enumerate(("a", "b", "c")):
                for i in range(n):
                    _write_png(os.path.join(root, split, name, f"{i}.png"), value=10 * c)
        data = load_image_folder(root, image_size=(4, 6), batch_size=16, color_mode="grayscale")
        self.assertEqual(data.class_names, ["a", "b", "c"])
        self.assertEqual((data.num_train, data.num_validation, data.num_test), (9, 6, 3))
        x, y = next(iter(data.test))
        self.assertEqual(tuple(x.shape), (3, 4, 6, 1))
        self.assertEqual(sorted(y.numpy().tolist()), [0, 1, 2])

    def test_no_validation_split(self):
        root = self.make_folder(per_class=2)
        data = load_image_folder(root, validation_split=0)
        self.assertIsNone(data.validation)
        self.assertEqual(data.num_train, 4)

    def test_mixed_sizes(self):
        root = self.make_folder(per_class=2)
        _write_png(os.path.join(root, "dog", "big.png"), size=(12, 10))
        self.assertRaisesValueError(["`image_size`", "mixed sizes", "(12, 10)"], load_image_folder, root)
        data = load_image_folder(root, image_size=6, validation_split=0)
        x, _ = next(iter(data.train))
        self.assertEqual(tuple(x.shape[1:]), (6, 6, 3))

    def test_errors(self):
        self.assertRaisesValueError(["`data`", "existing folder"], load_image_folder, "/no/such/folder")
        empty = self.get_temp_dir()
        self.assertRaisesValueError(["`data`", "no images"], load_image_folder, empty)
        os.makedirs(os.path.join(empty, "cat"))
        self.assertRaisesValueError(["`data`", "no images"], scan_image_folder, empty)
        single = self.make_folder(classes=("only",))
        self.assertRaisesValueError(["at least 2 classes", "['only']"], load_image_folder, single)
        broken = self.make_folder()
        bad_path = os.path.join(broken, "dog", "broken.png")
        with open(bad_path, "wb") as f:
            f.write(b"this is not a png")
        self.assertRaisesValueError(["unreadable", "broken.png", "1 unreadable"], load_image_folder, broken)

    def test_split_with_extra_class(self):
        root = self.make_folder(classes=("a", "b"), prefix="train")
        for c in ("a", "b", "z"):
            _write_png(os.path.join(root, "val", c, "0.png"))
        self.assertRaisesValueError(["'val'", "['z']"], load_image_folder, root)


def _write_truncated_jpeg(path, keep=0.6, size=64, seed=0):
    """A JPEG whose header is intact (PIL's `verify` passes) but whose data stops part-way."""
    import io

    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype="uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * keep)])


class ImageFolderDecodeTest(TestCase):
    """Every image is decoded before training, with the decoder the pipeline uses."""

    def make_folder(self, per_class=3):
        root = self.get_temp_dir()
        for c, name in enumerate(("cat", "dog")):
            for i in range(per_class):
                _write_png(os.path.join(root, name, f"{i}.png"), value=40 * (c + 1))
        return root

    def test_truncated_jpeg_is_named_before_training(self):
        root = self.make_folder()
        bad = os.path.join(root, "cat", "cut.jpg")
        _write_truncated_jpeg(bad)
        with Image.open(bad) as image:  # the header-only check that used to let it through
            image.verify()
        self.assertRaisesValueError(
            ["unreadable", "1 unreadable", bad, "truncated or corrupt JPEG", "Remove or re-encode"],
            load_image_folder,
            root,
            image_size=8,
        )

    def test_web_page_saved_as_jpg_is_named(self):
        root = self.make_folder()
        bad = os.path.join(root, "dog", "download.jpg")
        with open(bad, "w") as handle:
            handle.write("<html><body>404 Not Found</body></html>")
        self.assertRaisesValueError([bad, "not an image"], load_image_folder, root)

    def test_corrupt_image_in_a_nested_folder_is_named(self):
        # image_dataset_from_directory reads class sub-folders recursively: so does the check.
        root = self.make_folder()
        bad = os.path.join(root, "dog", "more", "cut.jpg")
        _write_truncated_jpeg(bad)
        self.assertRaisesValueError([bad, "truncated"], load_image_folder, root, image_size=8)

    def test_nested_images_are_counted(self):
        root = self.make_folder(per_class=2)
        _write_png(os.path.join(root, "dog", "more", "extra.png"), value=80)
        data = load_image_folder(root, validation_split=0)
        self.assertEqual(data.num_train, 5)
        self.assertEqual(sum(len(y) for _, y in data.train), 5)

    def test_many_bad_files_listed_up_to_five(self):
        root = self.make_folder()
        for i in range(7):
            with open(os.path.join(root, "cat", f"bad{i}.png"), "wb") as handle:
                handle.write(b"not a png")
        message = self.assertRaisesValueError(["7 unreadable", "and 2 more"], load_image_folder, root)
        self.assertEqual(message.count("bad"), 5)

    def test_alpha_and_palette_images_become_rgb(self):
        root = self.get_temp_dir()
        rng = np.random.default_rng(1)
        expected = {}
        for c, mode in enumerate(("RGBA", "P")):
            pixels = rng.integers(0, 256, (6, 6, 4 if mode == "RGBA" else 3), dtype="uint8")
            image = Image.fromarray(pixels, mode="RGBA" if mode == "RGBA" else "RGB")
            if mode == "P":
                image = image.convert("P", palette=Image.ADAPTIVE, colors=16)
            path = os.path.join(root, f"class{c}", "0.png")
            os.makedirs(os.path.dirname(path))
            image.save(path)
            with Image.open(path) as saved:  # PIL's own conversion is the reference
                expected[c] = np.asarray(saved.convert("RGB"), dtype="float32")
        data = load_image_folder(root, validation_split=0, batch_size=2)
        x, y = next(iter(data.train))
        self.assertEqual(tuple(x.shape), (2, 6, 6, 3))
        for image, label in zip(x.numpy(), y.numpy()):
            np.testing.assert_array_equal(image, expected[int(label)])

    def test_split_missing_a_class_names_split_and_class(self):
        root = self.get_temp_dir()
        for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "b"))):
            for name in classes:
                _write_png(os.path.join(root, split, name, "0.png"))
        self.assertRaisesValueError(
            ["split 'val'", "every class", "['c']", os.path.join(root, "val", "c")], load_image_folder, root
        )
        os.makedirs(os.path.join(root, "val", "c"))  # present but empty: the same answer
        self.assertRaisesValueError(["split 'val'", "['c']"], load_image_folder, root)

    def test_non_image_files_are_ignored_and_listed(self):
        root = self.make_folder(per_class=2)
        notes = os.path.join(root, "cat", "notes.txt")
        with open(notes, "w") as handle:
            handle.write("taken in 2024")
        with open(os.path.join(root, "dog", ".DS_Store"), "wb") as handle:
            handle.write(b"\0\0")
        data = load_image_folder(root, validation_split=0)
        self.assertEqual(data.ignored, [notes])
        self.assertEqual(data.num_train, 4)

    def test_color_mode_error(self):
        root = self.make_folder()
        self.assertRaisesValueError(["`color_mode`", "color_mode='rgbx'"], load_image_folder, root, color_mode="rgbx")
