import numpy as np
from scipy import stats

from keras_transfer import recipes
from tests.test_case import TestCase


class WilsonIntervalTest(TestCase):
    def test_matches_scipy(self):
        # scipy's binomtest(...).proportion_ci(method="wilson") is an independent implementation.
        for successes, n in [(0, 1), (0, 10), (10, 10), (3, 7), (81, 263), (49, 50), (500, 1000)]:
            for confidence in (0.8, 0.95, 0.99):
                expected = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
                low, high = recipes.wilson_interval(successes, n, confidence)
                self.assertAlmostEqual(low, expected.low, places=12)
                self.assertAlmostEqual(high, expected.high, places=12)

    def test_vectorised_equals_scalar(self):
        k, n = np.array([0, 3, 81]), np.array([5, 7, 263])
        low, high = recipes.wilson_interval(k, n)
        for i in range(3):
            self.assertAllClose([low[i], high[i]], recipes.wilson_interval(int(k[i]), int(n[i])), atol=1e-15)

    def test_bad_arguments(self):
        self.assertRaisesValueError(["`confidence`", "confidence=1.0", "0.95"], recipes.wilson_interval, 1, 2, 1.0)
        self.assertRaisesValueError(["`n`", "n=0.0"], recipes.wilson_interval, 0, 0)
        self.assertRaisesValueError(["`n`", "successes=3.0"], recipes.wilson_interval, 3, 2)
        self.assertRaisesValueError(["`successes`", "non-negative integer"], recipes.wilson_interval, -1, 2)


class PairedDifferenceIntervalTest(TestCase):
    def test_published_example(self):
        # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 8: complete
        # response before/after consolidation therapy (Cavo et al. 2012), table [[59, 6], [16, 80]]; Newcombe
        # square-and-add interval: estimate -0.0621 (95% CI -0.1186 to -0.0046).
        difference, low, high = recipes.paired_difference_interval(59, 6, 16, 80)
        self.assertAlmostEqual(difference, -0.0621, places=4)
        self.assertAlmostEqual(low, -0.1186, places=4)
        self.assertAlmostEqual(high, -0.0046, places=4)

    def test_hand_computed_phi_zero_case(self):
        # both=0 and neither=0 make A = -b c < 0, phi = -b c / sqrt(margins); computed here by hand in float64.
        b, c, n, z = 7.0, 3.0, 10.0, stats.norm.ppf(0.975)

        def wilson(k):
            center = (k + z * z / 2) / (n + z * z)
            half = z / (n + z * z) * np.sqrt(k * (n - k) / n + z * z / 4)
            return center - half, center + half

        (l1, u1), (l2, u2) = wilson(b), wilson(c)
        phi = -b * c / np.sqrt(b * c * c * b)  # margins (a+b)(c+d)(a+c)(b+d) = b c c b
        p1, p2 = b / n, c / n
        low = p1 - p2 - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
        high = p1 - p2 + np.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
        self.assertAllClose(recipes.paired_difference_interval(0, 7, 3, 0), (0.4, low, high), atol=1e-12)

    def test_swapping_the_models_negates_the_interval(self):
        difference, low, high = recipes.paired_difference_interval(40, 12, 3, 9)
        self.assertAllClose(recipes.paired_difference_interval(40, 3, 12, 9), (-difference, -high, -low), atol=1e-12)

    def test_coverage_by_simulation(self):
        # Paired tables drawn with known cell probabilities: the 95% intervals cover the true difference
        # p1 - p2 = 0.2 - 0.1 in about 95% of draws (Newcombe reports coverage near nominal for method 10).
        rng = np.random.default_rng(0)
        tables = rng.multinomial(80, [0.6, 0.2, 0.1, 0.1], size=4000).T
        _, low, high = recipes.paired_difference_interval(*tables)
        coverage = np.mean((low <= 0.1) & (0.1 <= high))
        self.assertGreater(coverage, 0.93)
        self.assertLess(coverage, 0.975)

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["`confidence`", "confidence=0", "0.95"], recipes.paired_difference_interval, 1, 1, 1, 1, 0
        )
        self.assertRaisesValueError(["at least one example"], recipes.paired_difference_interval, 0, 0, 0, 0)
        self.assertRaisesValueError(["`neither`"], recipes.paired_difference_interval, 1, 1, 1, 0.5)
