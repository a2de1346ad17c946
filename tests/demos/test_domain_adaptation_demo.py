import os

from keras_transfer import cli
from tests.test_case import TestCase


class DomainAdaptationDemoTest(TestCase):
    def test_quick_demo(self):
        out = self.get_temp_dir()
        results = cli._demo(
            cli.build_parser().parse_args(["demo", "--quick", "--sections", "domain_adaptation", "--output", out])
        )
        rows = results["domain_adaptation"]["results"]
        self.assertEqual(sorted(rows), ["DANN", "source-only"])
        # Seeded and deterministic on CPU: DANN beats source-only on the rotated target.
        self.assertGreater(rows["DANN"]["target_accuracy"], rows["source-only"]["target_accuracy"])
        self.assertTrue(os.path.exists(os.path.join(out, "domain_adaptation", "moons_decision_boundaries.png")))
