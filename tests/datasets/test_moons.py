import numpy as np

from keras_transfer.datasets import load_moons
from keras_transfer.datasets.moons import rotate
from tests.test_case import TestCase


class MoonsTest(TestCase):
    def test_shapes_and_rotation(self):
        data = load_moons(seed=3)
        xs, ys = data.source_train
        xt, yt = data.target_train
        self.assertEqual((xs.shape, xt.shape, data.target_test[0].shape), ((300, 2), (300, 2), (1000, 2)))
        self.assertEqual(xs.dtype, np.float32)
        self.assertEqual(np.bincount(ys).tolist(), [150, 150])
        self.assertAllClose(xs.mean(axis=0), [0.0, 0.0], atol=1e-5)
        # Rotating the target back by -35 degrees gives moons of the source law: the class
        # means match the source ones (same generator, independent draw).
        back = rotate(xt, -35.0)
        for label in (0, 1):
            self.assertAllClose(back[yt == label].mean(0), xs[ys == label].mean(0), atol=0.15)
        # A 90-degree rotation is (x, y) -> (-y, x): the rotation matrix convention.
        self.assertAllClose(rotate(np.array([[1.0, 0.0]]), 90.0), [[0.0, 1.0]], atol=1e-12)
        again = load_moons(seed=3)
        np.testing.assert_array_equal(again.target_train[0], xt)

    def test_errors(self):
        self.assertRaisesValueError(["`n_samples`", "Received: n_samples=1"], load_moons, n_samples=1)
        self.assertRaisesValueError(["`n_target`", "Received: n_target=0"], load_moons, n_target=0)
        self.assertRaisesValueError(["`noise`", "Received: noise=-0.1"], load_moons, noise=-0.1)
        self.assertRaisesValueError(["`angle`", "Received: angle='35'"], load_moons, angle="35")
