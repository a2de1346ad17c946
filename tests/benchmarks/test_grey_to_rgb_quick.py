"""The grey-to-RGB input mapping benchmark's --quick mode, so that it cannot rot."""

from benchmarks import grey_to_rgb
from tests.test_case import TestCase


class GreyToRgbBenchmarkQuickTest(TestCase):
    def test_grey_to_rgb_quick(self):
        results = grey_to_rgb.main(["--quick"])
        self.assertEqual(set(results), {(m, s) for m in grey_to_rgb.MODES for s in ("linear probe", "LP-FT")})
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
        # The learned colour map starts as replication and is not trained by the convex probe.
        self.assertAlmostEqual(results[("learned", "linear probe")], results[("replicate", "linear probe")], places=6)
