"""benchmarks/contrastive_batch_memory.py --quick, so it cannot rot."""

from benchmarks import contrastive_batch_memory
from tests.test_case import TestCase


class ContrastiveBatchMemoryQuickTest(TestCase):
    def test_quick(self):
        results = contrastive_batch_memory.main(["--quick"])
        self.assertEqual(len(results), 2)  # plain, chunked
        for name, result in results.items():
            self.assertNotIn("error", result, name)
            self.assertGreater(result["step_s"], 0.0)
        for model in ("clip",):
            for batch in (32,):
                # Same weights, data and SGD steps: gradient caching leaves the trajectory unchanged.
                plain, chunked = results[f"{model} {batch} None"], results[f"{model} {batch} 16"]
                self.assertAllClose(chunked["loss"], plain["loss"], atol=1e-4, rtol=1e-4)
