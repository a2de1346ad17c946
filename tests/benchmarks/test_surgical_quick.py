"""The surgical fine-tuning benchmark's --quick mode, so that it cannot rot."""

from benchmarks import surgical_digits
from tests.test_case import TestCase


class SurgicalBenchmarkQuickTest(TestCase):
    def test_surgical_quick(self):
        results, picks = surgical_digits.main(["--quick"])
        shift = surgical_digits.SHIFTS[-1]
        self.assertEqual(set(results), {(shift, "last"), (shift, "auto")})
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
        # One seed: "auto" chose exactly once, among the four choices.
        self.assertEqual(sum(picks[shift].values()), 1)
        self.assertLessEqual(set(picks[shift]), set(surgical_digits.CHOICES))
        # Transferred features from digits 0-4, one epoch each: well above chance (0.2) on 5-9.
        self.assertGreater(results[(shift, "auto")], 0.4)
