import keras
import numpy as np

from keras_transfer.losses import barlow_twins_loss
from keras_transfer.losses import vicreg_loss
from tests.test_case import TestCase


def numpy_barlow_twins(z1, z2, lambd):
    """The official code (facebookresearch/barlowtwins) in float64 NumPy: BatchNorm1d(affine=False), c / N."""
    z1, z2 = np.asarray(z1, "float64"), np.asarray(z2, "float64")

    def bn(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)

    c = bn(z1).T @ bn(z2) / len(z1)
    on = ((np.diag(c) - 1) ** 2).sum()
    off = (c**2).sum() - (np.diag(c) ** 2).sum()
    return on + lambd * off


def numpy_vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
    """The official code (facebookresearch/vicreg, main_vicreg.py VICReg.forward) in float64 NumPy."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    n, d = x.shape
    repr_loss = ((x - y) ** 2).mean()
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = np.sqrt(x.var(0, ddof=1) + 1e-4), np.sqrt(y.var(0, ddof=1) + 1e-4)
    std_loss = np.maximum(0, 1 - std_x).mean() / 2 + np.maximum(0, 1 - std_y).mean() / 2
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)

    def off(c):
        return (c**2).sum() - (np.diag(c) ** 2).sum()

    cov_loss = off(cov_x) / d + off(cov_y) / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


class BarlowTwinsLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.z1 = rng.normal(size=(16, 6)).astype("float32")
        self.z2 = (self.z1 + 0.3 * rng.normal(size=(16, 6))).astype("float32")

    def test_matches_the_official_formula(self):
        for lambd in (5e-3, 0.2, 0.0):
            expected = numpy_barlow_twins(self.z1, self.z2, lambd)
            self.assertAllClose(barlow_twins_loss(self.z1, self.z2, lambd), expected, rtol=1e-5, atol=1e-5)
        value = barlow_twins_loss(self.z1.astype("float64"), self.z2.astype("float64"), 0.1)
        self.assertEqual(keras.backend.standardize_dtype(value.dtype), "float64")
        self.assertAllClose(value, numpy_barlow_twins(self.z1, self.z2, 0.1), rtol=1e-12, atol=1e-12)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(lambda a, b: barlow_twins_loss(a, b, 0.1), [self.z1[:6, :3], self.z2[:6, :3]])

    def test_errors(self):
        self.assertRaisesValueError(["at least 2 pairs", "batch size 1"], barlow_twins_loss, self.z1[:1], self.z2[:1])
        self.assertRaisesValueError(["same shape"], barlow_twins_loss, self.z1, self.z2[:, :4])
        self.assertRaisesValueError(
            ["`redundancy_weight`", "redundancy_weight=-1"], barlow_twins_loss, self.z1, self.z2, -1
        )


class VICRegLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(1)
        self.z1 = (0.5 * rng.normal(size=(12, 5))).astype("float32")  # std below 1: the hinge is active
        self.z2 = (self.z1 + 0.2 * rng.normal(size=(12, 5))).astype("float32")

    def test_matches_the_official_formula(self):
        for weights in ((25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
            expected = numpy_vicreg(self.z1, self.z2, *weights)
            self.assertAllClose(vicreg_loss(self.z1, self.z2, *weights), expected, rtol=1e-5, atol=1e-5)

    def test_gradients_match_finite_differences(self):
        self.run_gradient_check(lambda a, b: vicreg_loss(a, b), [self.z1[:5, :3], self.z2[:5, :3]])

    def test_errors(self):
        self.assertRaisesValueError(["at least 2 pairs"], vicreg_loss, self.z1[:1], self.z2[:1])
        self.assertRaisesValueError(["2-D"], vicreg_loss, self.z1[None], self.z2[None])
        self.assertRaisesValueError(["`variance_weight`", "variance_weight=nan"], vicreg_loss, self.z1, self.z2, 25.0,
                                    float("nan"))  # fmt: skip
