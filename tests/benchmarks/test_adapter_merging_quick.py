"""The adapter merging benchmark's --quick mode, so that it cannot rot."""

from benchmarks import adapter_merging_digits
from tests.test_case import TestCase


class AdapterMergingBenchmarkQuickTest(TestCase):
    def test_adapter_merging_quick(self):
        results = adapter_merging_digits.main(["--quick"])
        rows = adapter_merging_digits.QUICK_ROWS + tuple(adapter_merging_digits.MERGES)
        self.assertEqual(set(results), {(row, column) for row in rows for column in adapter_merging_digits.COLUMNS})
        for value in results.values():
            self.assertTrue(0.0 <= value <= 1.0)
        # Task A is the backbone's own domain; task B (upside down) needs its adapter: even after two
        # epochs the B adapter beats the backbone on B, and every model stays above chance (0.2) on A.
        self.assertGreater(results[("LoRA task B", "task B (5-9)")], results[("backbone (no adapter)", "task B (5-9)")])
        for row in rows:
            self.assertGreater(results[(row, "task A (0-4)")], 0.2, row)
