"""The forgetting benchmark's --quick mode, so that it cannot rot."""

from benchmarks import forgetting_digits
from tests.test_case import TestCase


class ForgettingBenchmarkQuickTest(TestCase):
    def test_forgetting_quick(self):
        results = forgetting_digits.main(["--quick"])
        expected = {(method, part) for method in forgetting_digits.QUICK_METHODS for part in ("target", "source")}
        self.assertEqual(set(results), expected | {("source model", "source")})
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
        # Source features from digits 0-4 and one target epoch: well above chance (0.2) on 5-9.
        for method in forgetting_digits.QUICK_METHODS:
            self.assertGreater(results[(method, "target")], 0.5, method)
