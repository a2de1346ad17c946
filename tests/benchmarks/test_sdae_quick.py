"""The stacked denoising autoencoder benchmark's --quick mode, so that it cannot rot."""

from benchmarks import sdae_digits
from tests.test_case import TestCase


class SdaeBenchmarkQuickTest(TestCase):
    def test_sdae_quick(self):
        results = sdae_digits.main(["--quick"])
        self.assertEqual(set(results), {(method, 2) for method in sdae_digits.METHODS})
        for value in results.values():
            self.assertTrue(0.1 <= value <= 1.0)  # at least chance on ten classes
