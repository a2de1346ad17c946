"""The bias benchmark's --quick mode, so it cannot rot."""

import numpy as np

from benchmarks import bias_digits
from tests.test_case import TestCase


class BiasBenchmarkQuickTest(TestCase):
    def test_quick(self):
        results = bias_digits.main(["--quick"])
        (run,) = results["runs"]
        (key,) = run
        self.assertEqual(key, (bias_digits.SOURCES[0], bias_digits.METHODS[0]))
        report = run[key]
        self.assertEqual(report.reference, "baseline")
        self.assertEqual(report.names[-2:], ["inverted", "normal"])
        self.assertEqual(report["inverted"]["n"] + report["normal"]["n"], report["all"]["n"])
        for row in report:
            self.assertTrue(0.0 <= row["transferred"] <= 1.0 and 0.0 <= row["baseline"] <= 1.0)
            self.assertLessEqual(row["low"], row["difference"])
            self.assertLessEqual(row["difference"], row["high"])
        self.assertEqual(len(results["rows"]), 2)

    def test_invert_half(self):
        x = np.arange(8, dtype="uint8").reshape(8, 1, 1, 1)
        inverted_x, mask = bias_digits.invert_half(x, seed=0)
        self.assertEqual(int(mask.sum()), 4)
        self.assertEqual(inverted_x[mask].ravel().tolist(), (255 - x[mask]).ravel().tolist())
        self.assertEqual(inverted_x[~mask].ravel().tolist(), x[~mask].ravel().tolist())

    def test_split_digits_keeps_target_labels_out_of_the_source(self):
        (x_source, _), (x_target, y_target), _ = bias_digits.split_digits(3, 8, seed=0)
        self.assertEqual(sorted(np.bincount(y_target).tolist()), [3] * 10)
        self.assertEqual(len(x_source) + len(x_target), 1347)
