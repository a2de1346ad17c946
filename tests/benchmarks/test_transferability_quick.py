"""The transferability benchmark's --quick mode, so it cannot rot."""

import numpy as np

from benchmarks import transferability_digits
from tests.test_case import TestCase


class TransferabilityBenchmarkQuickTest(TestCase):
    def test_quick(self):
        results = transferability_digits.main(["--quick"])
        names = ["0-4, full", "0-4, inverted", "random init"]
        self.assertEqual(results["names"], names)
        (run,) = results["runs"]
        for metric in transferability_digits.METRICS:
            self.assertEqual(set(run["scores"][metric]), set(names))
            self.assertTrue(np.isfinite(list(run["scores"][metric].values())).all())
            for protocol in transferability_digits.PROTOCOLS:
                self.assertGreaterEqual(run["tau"][protocol][metric], -1.0)
                self.assertLessEqual(run["tau"][protocol][metric], 1.0)
        for protocol in transferability_digits.PROTOCOLS:
            self.assertEqual(set(run["accuracy"][protocol]), set(names))
            for accuracy in run["accuracy"][protocol].values():
                self.assertGreaterEqual(accuracy, 0.0)
                self.assertLessEqual(accuracy, 1.0)
        # NCE lies in [-log 5, 0] on five target classes; LEEP is a mean log-likelihood (<= 0).
        for score in run["scores"]["nce"].values():
            self.assertTrue(-np.log(5) - 1e-9 <= score <= 1e-9)
        self.assertTrue(all(score <= 0 for score in run["scores"]["leep"].values()))

    def test_source_tasks(self):
        x = np.arange(4 * 2 * 2 * 1, dtype="uint8").reshape(4, 2, 2, 1)
        y = np.array([0, 1, 2, 3])
        tasks = transferability_digits.source_tasks(x, y)
        self.assertGreaterEqual(len(tasks), 6)
        self.assertEqual(tasks["0-1 only"][1].tolist(), [0, 1])
        self.assertEqual(int(tasks["0-4, inverted"][0][0, 0, 0, 0]), 255)
        self.assertEqual(sorted(tasks["0-4, shuffled labels"][1].tolist()), [0, 1, 2, 3])
        self.assertEqual(tasks["0-4, rotated 90°"][0][0, :, :, 0].tolist(), np.rot90(x[0, :, :, 0]).tolist())
