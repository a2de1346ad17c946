"""The self-supervised benchmarks' --quick modes, so they cannot rot."""

from benchmarks import _ssl_experiment
from benchmarks import ssl_digits_probe
from benchmarks import ssl_nt_xent
from benchmarks import ssl_step_cost
from tests.test_case import TestCase


class SSLBenchmarksQuickTest(TestCase):
    def test_nt_xent_quick(self):
        results = ssl_nt_xent.main(["--quick"])
        for row in results.values():
            self.assertLess(row["numpy_diff"], 1e-5)
            if "torch_diff" in row:  # optional peer
                self.assertLess(row["torch_diff"], 1e-5)

    def test_step_cost_quick(self):
        results = ssl_step_cost.main(["--quick"])
        self.assertIn("crop_and_resize (ours, batched)", results["crops"])
        for key in ("simclr_step", "supervised_step", "two_supervised_steps", "step_ratio", "pipeline_ratio"):
            self.assertGreater(results[key], 0.0)

    def test_digits_probe_quick(self):
        results = ssl_digits_probe.main(["--quick"])["results"]
        self.assertEqual(set(results), {"random init", "simclr", "moco"})
        for per_budget in results.values():
            for accuracies in per_budget.values():
                self.assertTrue(all(0.0 <= a <= 1.0 for a in accuracies))
        # Even one quick epoch: the probe beats chance (0.1) on all labels.
        self.assertGreater(results["random init"][None][0], 0.2)

    def test_digits_probe_pretrains_every_method(self):
        from keras_transfer.datasets import load_digits

        (x, y), _ = load_digits(image_size=8, channels=1, seed=0)
        # The quick run covers the others; the patch tasks use 2 px patches at 8 px.
        for method in (
            "barlow_twins",
            "vicreg",
            "simsiam",
            "byol",
            "dino",
            "rotation",
            "denoising",
            "relative_position",
            "jigsaw",
            "supervised",
        ):
            encoder = _ssl_experiment.pretrain(method, x[:64], y[:64], epochs=1, image_size=8, widths=(4,))
            self.assertEqual(encoder.output_shape, (None, 4))
        self.assertRaisesValueError(
            ["`method` must be one of", "method='swav'"], _ssl_experiment.pretrain, "swav", None, None, epochs=1
        )
