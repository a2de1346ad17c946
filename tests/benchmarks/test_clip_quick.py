"""The CLIP benchmarks' --quick modes, so they cannot rot."""

from benchmarks import clip_digits
from benchmarks import clip_loss_reference
from tests.test_case import TestCase


class ClipBenchmarksQuickTest(TestCase):
    def test_clip_loss_reference_quick(self):
        results = clip_loss_reference.main(["--quick"])
        self.assertLess(results["worst"], clip_loss_reference.TOLERANCE)
        self.assertGreater(results["results"][0]["loss"], 0.0)

    def test_clip_digits_quick(self):
        results = clip_digits.main(["--quick", "--loss-type", "siglip"])  # the CLIP loss: tests/models
        for key in ("ensemble", "single_mean"):
            self.assertTrue(0.0 <= results[key] <= 1.0)
        for value in results["recall_class"].values():
            self.assertTrue(0.0 <= value <= 1.0)
        self.assertGreater(results["step_cost"]["ratio"], 0.0)
        self.assertGreater(results["step_cost"]["clip_ms"], 0.0)
        self.assertEqual(set(results["wise_ft"]), {0.0, 0.25, 0.5, 0.75, 1.0})
