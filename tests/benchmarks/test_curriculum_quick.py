"""The curriculum benchmark's --quick mode, so it cannot rot."""

import numpy as np

from benchmarks import curriculum_digits
from tests.test_case import TestCase


class CurriculumBenchmarkQuickTest(TestCase):
    def test_quick(self):
        result = curriculum_digits.main(["--quick"])
        by_method = result["results"][0.2]
        self.assertTrue(set(curriculum_digits.METHODS) <= set(by_method))
        for method in curriculum_digits.METHODS:
            curve = by_method[method]["curves"][0]
            self.assertEqual(len(curve), 2)  # 20 steps, evaluated every 10
            self.assertEqual(by_method[method]["final"], [curve[-1]])
            self.assertTrue(all(0.0 <= v <= 1.0 for v in curve))
        self.assertEqual(len(by_method["noisy_share_of_first_prefix"]), 1)
        with self.assertRaisesRegex(ValueError, "multiples of `--eval-every`"):
            curriculum_digits.main(["--steps", "30"])

    def test_noisy_labels(self):
        y = np.arange(2000) % 5
        noisy, flipped = curriculum_digits.noisy_labels(y, 0.2, 5, seed=0)
        # Every flipped label moves to another class, every other label stays; about 20 % flip.
        self.assertTrue(np.all(noisy[flipped] != y[flipped]))
        self.assertTrue(np.all(noisy[~flipped] == y[~flipped]))
        self.assertLess(abs(flipped.mean() - 0.2), 0.03)
        self.assertEqual(set(np.unique(noisy).tolist()), {0, 1, 2, 3, 4})
