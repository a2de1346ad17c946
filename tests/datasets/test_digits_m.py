import numpy as np
from sklearn.datasets import load_sample_images

from keras_transfer.datasets import load_digits
from keras_transfer.datasets import load_digits_m
from keras_transfer.datasets.digits_m import blend_with_photos
from tests.test_case import TestCase


class DigitsMTest(TestCase):
    def test_shapes_split_and_determinism(self):
        (x_train, y_train), (x_test, y_test) = load_digits_m(image_size=16, seed=0)
        (d_train, dy_train), (_, dy_test) = load_digits(image_size=16, channels=3, seed=0)
        self.assertEqual(x_train.shape, (len(d_train), 16, 16, 3))
        self.assertEqual(x_train.dtype, np.uint8)
        # Same split and labels as load_digits with the same seed.
        np.testing.assert_array_equal(y_train, dy_train)
        np.testing.assert_array_equal(y_test, dy_test)
        (again, _), _ = load_digits_m(image_size=16, seed=0)
        np.testing.assert_array_equal(x_train, again)
        (other, _), _ = load_digits_m(image_size=16, seed=1)
        self.assertFalse(np.array_equal(x_train, other))
        # Colour: the channels differ (photo patches), unlike grey digits.
        self.assertGreater(np.abs(x_train[..., 0].astype(int) - x_train[..., 2].astype(int)).mean(), 1.0)

    def test_blend_is_abs_difference_with_a_photo_patch(self):
        # Independent reference: for each image, some patch P of one sample photo has |P - d| == out.
        rng = np.random.default_rng(0)
        digits = rng.integers(0, 256, size=(3, 8, 8, 1)).astype("uint8")
        out = blend_with_photos(digits, seed=3)
        self.assertEqual(out.shape, (3, 8, 8, 3))
        photos = [np.asarray(p, dtype="float32") for p in load_sample_images().images]
        # Rebuild the same draws from the documented seeding (photo index, then top/left per image).
        draw = np.random.default_rng(3)
        which = draw.integers(0, len(photos), size=3)
        for i in range(3):
            photo = photos[which[i]]
            top = draw.integers(0, photo.shape[0] - 8 + 1)
            left = draw.integers(0, photo.shape[1] - 8 + 1)
            patch = photo[top : top + 8, left : left + 8]
            expected = np.abs(patch - digits[i].astype("float32"))
            np.testing.assert_array_equal(out[i], np.clip(np.round(expected), 0, 255).astype("uint8"))
        # A zero digit gives back the photo patch itself.
        zero = blend_with_photos(np.zeros((1, 4, 4, 3), "uint8"), seed=0)
        self.assertGreater(zero.std(), 0)

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`x`", "(2, 8, 8)"], blend_with_photos, np.zeros((2, 8, 8)))
        self.assertRaisesValueError(["`x`", "(2, 8, 8, 2)"], blend_with_photos, np.zeros((2, 8, 8, 2)))
        self.assertRaisesValueError(["`image_size`", "(1000, 1000)"], blend_with_photos, np.zeros((1, 1000, 1000, 1)))
        self.assertRaisesValueError("`image_size`", load_digits_m, image_size=0)
