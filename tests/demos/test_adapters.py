import os

from keras_transfer.demos import adapters as adapters_demo
from tests.test_case import TestCase


class AdaptersDemoTest(TestCase):
    def test_quick_run(self):
        out = self.get_temp_dir()
        results = adapters_demo.run(out, quick=True)
        for name in ("conv series", "conv parallel", "bottleneck M=4", "LoRA r=2", "linear probe"):
            self.assertGreater(results[name]["accuracy"], 0.2, name)  # 5 classes: chance is 0.2
        for name in ("conv series", "conv parallel", "LoRA r=2"):
            self.assertLess(results[f"fold {name}"]["max_abs_error"], 1e-4)
            self.assertTrue(results[f"fold {name}"]["original_architecture"])
        # Each task's adapter file is the better one on its own task.
        self.assertGreater(results["task digits 5-9"]["digits 5-9"], results["task inverted 5-9"]["digits 5-9"])
        self.assertGreater(results["task inverted 5-9"]["inverted 5-9"], results["task digits 5-9"]["inverted 5-9"])
        self.assertTrue(os.path.exists(os.path.join(out, "adapters_accuracy.png")))
        self.assertTrue(os.path.exists(os.path.join(out, "digits_5-9.npz")))
