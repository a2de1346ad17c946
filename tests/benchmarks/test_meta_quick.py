"""The meta-learning benchmarks' --quick modes, so they cannot rot."""

import importlib.util

from benchmarks import meta_digits_fewshot
from benchmarks import meta_maml_speed
from benchmarks import meta_sinusoid
from tests.test_case import TestCase


class MetaBenchmarksQuickTest(TestCase):
    def test_maml_speed_quick(self):
        results = meta_maml_speed.main(["--quick", "--steps", "20"])
        for name, ms in results.items():
            self.assertTrue(0.0 < ms < 5000.0, f"{name}: {ms} ms")
        self.assertIn("keras_transfer MetaModel, vectorised + XLA", results)
        if importlib.util.find_spec("jax") is None:
            self.assertNotIn("JAX jit+vmap", results)

    def test_sinusoid_quick(self):
        results = meta_sinusoid.main(
            ["--quick", "--iterations", "100", "--eval-tasks", "20", "--variants", "maml,pretrained"]
        )
        self.assertEqual(set(results), {"MAML (second order)", "pretrained + fine-tune"})
        for scores in results.values():
            # Target variance is E[A^2]/2 ~ 4.2: any sane model is below 10 and finite.
            self.assertTrue(all(0.0 < v < 10.0 for v in scores.values()), scores)

    def test_digits_fewshot_quick(self):
        # MAML rows are left out here (their tracing is the slow part; MetaModel has its own tests).
        results = meta_digits_fewshot.main(
            ["--quick", "--iterations", "5", "--episodes", "20", "--methods", "proto,blackbox,baselines"]
        )
        self.assertEqual(len(results), 5)
        for name, (acc, half_width) in results.items():
            self.assertTrue(0.0 <= acc <= 1.0 and 0.0 <= half_width < 0.5, (name, acc, half_width))
        # 5-way: chance is 0.2; nearest class mean in pixel space is ~0.7 on these episodes.
        self.assertGreater(results["nearest class mean, pixels (no learning)"][0], 0.5)
