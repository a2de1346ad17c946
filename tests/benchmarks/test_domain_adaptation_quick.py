"""Runs the domain-adaptation benchmarks with --quick in-process (seconds)."""

import math
import os

import numpy as np

from benchmarks import domain_adaptation_digits
from benchmarks import domain_adaptation_moons
from benchmarks import domain_adaptation_step_time
from tests.test_case import TestCase


class DomainAdaptationBenchmarksQuickTest(TestCase):
    def test_moons(self):
        result = domain_adaptation_moons.main(["--quick", "--output", self.get_temp_dir()])
        for key in ("source-only", "DANN", "domain accuracy"):
            self.assertTrue(0.0 <= result["summary"][key]["mean"] <= 1.0)
        self.assertTrue(os.path.getsize(result["png"]) > 1000)

    def test_digits(self):
        result = domain_adaptation_digits.main(["--quick"])
        self.assertEqual(
            sorted(result["mean"]),
            ["AdaBN", "DANN (λ→0.1)", "DANN (λ→1)", "Deep CORAL", "source-only", "target-only"],
        )
        for value in result["mean"].values():
            self.assertTrue(0.0 <= value <= 1.0)
        self.assertEqual(len(result["history"][0]["DANN (λ→1)"]["val_domain_accuracy"]), 1)
        self.assertEqual(sum(result["polarity_counts"].values()), 128)
        for groups in result["polarity"].values():
            for value in groups.values():
                self.assertTrue(0.0 <= value <= 1.0)

    def test_stroke_polarity(self):
        digit = np.zeros((1, 4, 4, 1), "uint8")
        digit[0, 1:3, 1:3] = 255
        flat = np.full((1, 4, 4, 3), 1.0, "float32")
        # |patch - digit|: a dark patch keeps the stroke bright, a bright one inverts it,
        # a mid-grey one hides it.
        blended = np.concatenate(
            [np.abs(level * flat - np.repeat(digit, 3, -1)) for level in (40.0, 220.0, 128.0)]
        )
        groups = domain_adaptation_digits.stroke_polarity(np.repeat(digit, 3, 0), blended)
        self.assertEqual(list(groups), ["normal", "inverted", "low contrast"])

    def test_step_time(self):
        result = domain_adaptation_step_time.main(["--quick"])
        self.assertTrue(all(v > 0 and math.isfinite(v) for v in result["ms_per_step"].values()))
        self.assertTrue(0.3 < result["dann_vs_source_only"] < 20)
