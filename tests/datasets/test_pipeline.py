import numpy as np
import tensorflow as tf

from keras_transfer.datasets import make_dataset
from keras_transfer.datasets.pipeline import as_numpy_xy
from tests.test_case import TestCase


class MakeDatasetTest(TestCase):
    def test_batches_and_order(self):
        x = np.arange(10, dtype="float32").reshape(10, 1)
        y = np.arange(10)
        batches = list(make_dataset(x, y, batch_size=4))
        self.assertEqual([len(b[0]) for b in batches], [4, 4, 2])
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
        dropped = list(make_dataset(x, y, batch_size=4, drop_remainder=True))
        self.assertEqual(len(dropped), 2)
        only_x = list(make_dataset(x, batch_size=5))
        self.assertEqual(len(only_x), 2)
        self.assertIsInstance(only_x[0], tf.Tensor)

    def test_shuffle_is_seeded_permutation(self):
        x = np.arange(50, dtype="float32")
        a = np.concatenate(list(make_dataset(x, batch_size=50, shuffle=True, seed=3).as_numpy_iterator()))
        b = np.concatenate(list(make_dataset(x, batch_size=50, shuffle=True, seed=3).as_numpy_iterator()))
        np.testing.assert_array_equal(np.sort(a), x)
        self.assertFalse(np.array_equal(a, x))
        np.testing.assert_array_equal(a, b)

    def test_repeat(self):
        ds = make_dataset(np.zeros((3, 1), "float32"), batch_size=2, repeat=True)
        self.assertEqual(len(list(ds.take(5))), 5)

    def test_errors(self):
        self.assertRaisesValueError(["`x`", "empty"], make_dataset, np.zeros((0, 2)))
        self.assertRaisesValueError(["`x`", "1 NaN"], make_dataset, np.array([[1.0, np.nan]]))
        self.assertRaisesValueError(["len(x)=3", "len(y)=2"], make_dataset, np.zeros((3, 1)), np.zeros(2))
        self.assertRaisesValueError(["`batch_size`", "batch_size=0"], make_dataset, np.zeros((3, 1)), batch_size=0)


class AsNumpyXYTest(TestCase):
    def test_tuple_and_dataset(self):
        x = np.arange(12, dtype="float32").reshape(6, 2)
        y = np.arange(6)
        x1, y1 = as_numpy_xy((x, y))
        np.testing.assert_array_equal(x1, x)
        x2, y2 = as_numpy_xy(make_dataset(x, y, batch_size=4))
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)

    def test_errors(self):
        self.assertRaisesValueError(["`data`", "empty"], as_numpy_xy, (np.zeros((0, 2)), np.zeros(0)))
        self.assertRaisesValueError(["len(x)=2", "len(y)=3"], as_numpy_xy, (np.zeros((2, 2)), np.zeros(3)))
        self.assertRaisesValueError(["`train`", "int"], as_numpy_xy, 5, "train")
        empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 2)), np.zeros(0))).batch(2)
        self.assertRaisesValueError(["`data`", "empty dataset"], as_numpy_xy, empty)
        x_only = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2))).batch(2)
        self.assertRaisesValueError(["`data`", "(x, y) batches"], as_numpy_xy, x_only)
