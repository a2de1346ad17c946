"""The foundation benchmarks' --quick modes, so they cannot rot."""

from benchmarks import linear_probe_speed
from benchmarks import lpft_ood
from benchmarks import transfer_vs_scratch
from tests.test_case import TestCase


class FoundationBenchmarksQuickTest(TestCase):
    def test_transfer_vs_scratch_quick(self):
        results = transfer_vs_scratch.main(["--quick"])
        self.assertEqual({method for _, method in results}, set(transfer_vs_scratch.METHODS))
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
        # Even with one source epoch, the probe on transferred features beats chance (0.2).
        self.assertGreater(results[(2, "linear probe")], 0.3)

    def test_linear_probe_speed_quick(self):
        results = linear_probe_speed.main(["--quick"])
        self.assertGreater(results["speedup"], 0.0)
        self.assertGreater(results["acc_convex"], 0.5)

    def test_lpft_ood_quick(self):
        results = lpft_ood.main(["--quick"])
        self.assertEqual(len(results), 2 * len(lpft_ood.METHODS))
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
