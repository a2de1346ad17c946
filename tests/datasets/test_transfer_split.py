import numpy as np

from keras_transfer.datasets import digits_source_target
from keras_transfer.datasets import load_digits
from keras_transfer.datasets import split_source_target
from tests.test_case import TestCase


class TransferSplitTest(TestCase):
    def test_digits_source_target(self):
        split = digits_source_target(image_size=16, channels=1, labels_per_class=7, seed=0)
        (train, y_train_all), (test, y_test_all) = load_digits(16, 1, seed=0)
        xs, ys = split.source_train
        xt, yt = split.target_train
        xtt, ytt = split.target_test
        self.assertEqual(xs.shape[1:], (16, 16, 1))
        # Source: every training digit of 0-4, labels unchanged (0-4 -> 0-4).
        np.testing.assert_array_equal(ys, y_train_all[y_train_all < 5])
        np.testing.assert_array_equal(xs, train[y_train_all < 5])
        self.assertEqual(len(split.source_test[0]), int(np.sum(y_test_all < 5)))
        # Target: 7 labels per class, re-indexed 5..9 -> 0..4.
        self.assertEqual(len(xt), 35)
        np.testing.assert_array_equal(np.bincount(yt), [7] * 5)
        np.testing.assert_array_equal(ytt, y_test_all[y_test_all >= 5] - 5)
        # Target images are real training images of the right class.
        for image, label in zip(xt, yt):
            matches = np.flatnonzero((train == image).all(axis=(1, 2, 3)))
            self.assertIn(label + 5, y_train_all[matches])
        # Unlabelled pool = the other target training images.
        self.assertEqual(len(split.target_unlabeled) + 35, int(np.sum(y_train_all >= 5)))
        self.assertEqual(split.target_classes, (5, 6, 7, 8, 9))
        again = digits_source_target(image_size=16, labels_per_class=7, seed=0)
        np.testing.assert_array_equal(again.target_train[0], xt)
        other = digits_source_target(image_size=16, labels_per_class=7, seed=1)
        self.assertFalse(np.array_equal(other.target_train[0], xt))

    def test_custom_classes_reindexed_in_given_order(self):
        x = np.arange(40, dtype="float32").reshape(40, 1)
        y = np.repeat(np.arange(4), 10)
        split = split_source_target((x, y), (x, y), source_classes=(3, 1), target_classes=(2, 0), labels_per_class=2)
        np.testing.assert_array_equal(np.unique(split.source_train[1]), [0, 1])
        # Class 3 -> 0, class 1 -> 1.
        np.testing.assert_array_equal(split.source_train[1], (y[np.isin(y, (1, 3))] == 1).astype(int))
        xt, yt = split.target_train
        np.testing.assert_array_equal(yt, np.where(xt[:, 0] < 10, 1, 0))

    def test_bad_arguments(self):
        x = np.zeros((20, 2), "float32")
        y = np.repeat(np.arange(4), 5)
        self.assertRaisesValueError(["`source_classes`", "(0,)"], split_source_target, (x, y), (x, y), (0,), (1, 2))
        self.assertRaisesValueError(["`target_classes`", "(1, 1)"], split_source_target, (x, y), (x, y), (0, 3), (1, 1))
        self.assertRaisesValueError(["absent", "[7]"], split_source_target, (x, y), (x, y), (0, 7), (1, 2))
        self.assertRaisesValueError(
            ["`labels_per_class`", "labels_per_class=0"], split_source_target, (x, y), (x, y), (0, 3), (1, 2), 0
        )
        self.assertRaisesValueError(
            ["`labels_per_class`", "at most 5", "labels_per_class=6"],
            split_source_target,
            (x, y),
            (x, y),
            (0, 3),
            (1, 2),
            6,
        )
