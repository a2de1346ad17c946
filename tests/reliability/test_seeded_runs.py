"""Two runs seeded with `keras.utils.set_random_seed` (op determinism on) end with identical
weights and optimizer state, for every model; another seed ends elsewhere (the check can fail)."""

import json
import os
import subprocess
import sys

from tests import model_zoo
from tests.test_case import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, "tests", "reliability", "_seeded_runs_probe.py")


class SeededRunsTest(TestCase):
    def test_same_seed_same_weights_for_every_model(self):
        result = subprocess.run([sys.executable, PROBE], cwd=ROOT, capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        digests = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(sorted(digests), sorted(model_zoo.NAMES))
        for name, (first, second, other_seed) in digests.items():
            with self.subTest(model=name):
                self.assertEqual(first, second, f"{name}: two runs with seed 11 differ")
                self.assertNotEqual(first, other_seed, f"{name}: seeds 11 and 12 give the same weights")
