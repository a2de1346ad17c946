"""The knowledge distillation benchmark's --quick mode, so that it cannot rot."""

from benchmarks import distillation_digits
from tests.test_case import TestCase


class DistillationBenchmarkQuickTest(TestCase):
    def test_distillation_quick(self):
        results = distillation_digits.main(["--quick"])
        self.assertEqual(set(results), set(distillation_digits.METHODS))
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
