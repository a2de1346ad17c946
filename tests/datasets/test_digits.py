import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits as sk_load_digits

from keras_transfer.datasets import digits as digits_lib
from keras_transfer.datasets import load_digits
from tests.test_case import TestCase


class LoadDigitsTest(TestCase):
    def test_native_size_matches_sklearn(self):
        # Independent reference: scikit-learn's raw 0..16 images, scaled to 0..255.
        raw = sk_load_digits()
        (x_train, y_train), (x_test, y_test) = load_digits(image_size=8, channels=1)
        self.assertEqual(x_train.dtype, np.uint8)
        self.assertEqual(y_train.dtype, np.int64)
        self.assertEqual(x_train.shape[1:], (8, 8, 1))
        self.assertEqual(len(x_train) + len(x_test), 1797)
        x_all, y_all = digits_lib.digit_images(8, 1)
        expected = np.round(raw.images / 16.0 * 255.0).astype("uint8")
        np.testing.assert_array_equal(x_all[..., 0], expected)
        np.testing.assert_array_equal(y_all, raw.target)
        self.assertEqual(set(np.unique(y_train)), set(range(10)))

    def test_split_is_stratified_seeded_and_disjoint(self):
        y = digits_lib.digit_images(8, 1)[1]
        train, test = digits_lib.split_indices(y, test_fraction=0.25, seed=0)
        self.assertEqual(len(np.intersect1d(train, test)), 0)
        self.assertEqual(len(train) + len(test), len(y))
        # Stratified: each class's test share is within one example of 25 %.
        for c in range(10):
            n_c = np.sum(y == c)
            self.assertLessEqual(abs(np.sum(y[test] == c) - 0.25 * n_c), 1.0)
        again = digits_lib.split_indices(y, 0.25, seed=0)
        np.testing.assert_array_equal(train, again[0])
        other = digits_lib.split_indices(y, 0.25, seed=1)
        self.assertFalse(np.array_equal(train, other[0]))

    def test_resize_and_rgb(self):
        (x8, _), _ = load_digits(image_size=8, channels=1)
        (x32, y32), _ = load_digits(image_size=32, channels=3)
        self.assertEqual(x32.shape[1:], (32, 32, 3))
        np.testing.assert_array_equal(x32[..., 0], x32[..., 1])
        np.testing.assert_array_equal(x32[..., 0], x32[..., 2])
        # Reference: TF's antialiased bilinear resize of the float images.
        raw = sk_load_digits().images.astype("float32") / 16.0 * 255.0
        all32 = digits_lib.digit_images(32, 1)[0]
        ref = tf.image.resize(raw[:5, ..., None], (32, 32), method="bilinear", antialias=True).numpy()
        np.testing.assert_array_equal(all32[:5], np.clip(np.round(ref), 0, 255).astype("uint8"))
        (xr, _), _ = load_digits(image_size=(12, 16))
        self.assertEqual(xr.shape[1:], (12, 16, 1))
        self.assertGreater(int(x32.max()), 200)

    def test_resize_images_accepts_nhw(self):
        out = digits_lib.resize_images(np.ones((2, 4, 4)), (8, 8))
        self.assertEqual(out.shape, (2, 8, 8, 1))
        self.assertAllClose(out, np.ones((2, 8, 8, 1)), atol=1e-5)
        same = digits_lib.resize_images(np.ones((2, 4, 4, 1)), (4, 4))
        self.assertEqual(same.dtype, np.float32)

    def test_bad_arguments(self):
        for bad in (0, -3, (8,), (8, 0), "8", True, 2.5):
            self.assertRaisesValueError(["`image_size`", f"image_size={bad!r}"], load_digits, image_size=bad)
        self.assertRaisesValueError(["`channels`", "channels=2"], load_digits, channels=2)
        for bad in (0, 1.0, -0.1, 1.5):
            self.assertRaisesValueError(["`test_fraction`", f"test_fraction={bad!r}"], load_digits, test_fraction=bad)
