"""Runs the domain-adaptation benchmarks with --quick in-process (seconds)."""

import math
import os

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

    def test_step_time(self):
        result = domain_adaptation_step_time.main(["--quick"])
        self.assertTrue(all(v > 0 and math.isfinite(v) for v in result["ms_per_step"].values()))
        self.assertTrue(0.3 < result["dann_vs_source_only"] < 20)
