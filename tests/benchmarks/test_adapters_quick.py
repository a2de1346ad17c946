from benchmarks import adapters_latency
from benchmarks import adapters_transfer
from tests.test_case import TestCase


class AdaptersBenchmarksQuickTest(TestCase):
    def test_transfer_quick(self):
        results = adapters_transfer.main(["--quick"])
        self.assertGreater(results["source_accuracy"], 0.3)
        for method in ("linear probe", "full fine-tune", "LoRA r=2 (1x1 convs)"):
            self.assertGreaterEqual(results[method]["accuracy"], 0.0)
            self.assertLessEqual(results[method]["accuracy"], 100.0)
            self.assertGreater(results[method]["trainable_percent"], 0.0)
        # Adapters train far fewer parameters than full fine-tuning.
        self.assertLess(results["conv series, full (project convs)"]["trainable_percent"],
                        results["full fine-tune"]["trainable_percent"] / 2)
        # BatchNorm affine training adds gamma/beta to the trainable set (statistics stay frozen).
        self.assertGreater(results["full fine-tune (BN affine, statistics frozen)"]["trainable_percent"],
                           results["full fine-tune"]["trainable_percent"])
        self.assertGreater(results["conv series, full (project convs) + BN affine"]["trainable_percent"],
                           results["conv series, full (project convs)"]["trainable_percent"])
        self.assertLess(results["BN affine only"]["trainable_percent"],
                        results["full fine-tune"]["trainable_percent"] / 2)

    def test_latency_quick(self):
        results = adapters_latency.main(["--quick"])
        self.assertLess(results["max_abs_error"]["conv adapters, folded"], 1e-3)
        self.assertLess(results["max_abs_error"]["LoRA, merged"], 1e-3)
        self.assertEqual(results["conv adapters, folded"]["params"], results["base"]["params"])
        self.assertGreater(results["conv adapters, unfolded"]["params"], results["base"]["params"])
        for name in ("conv adapters, folded", "conv adapters, unfolded"):
            self.assertGreater(results[name]["ratio_to_base"], 0.0)
