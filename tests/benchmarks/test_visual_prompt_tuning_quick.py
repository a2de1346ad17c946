from benchmarks import visual_prompt_tuning_digits
from tests.test_case import TestCase


class VisualPromptTuningBenchmarkQuickTest(TestCase):
    def test_quick(self):
        results = visual_prompt_tuning_digits.main(["--quick"])
        self.assertGreater(results["backbone_params"], 0)
        for method in visual_prompt_tuning_digits.METHODS:
            self.assertGreaterEqual(results[method]["median"], 0.0)
            self.assertLessEqual(results[method]["median"], 100.0)
        trainable = {m: results[m]["trainable"] for m in visual_prompt_tuning_digits.METHODS}
        # 5 classes on an 8-wide class token; 5 prompts of width 8 per prompted layer (2 layers).
        self.assertEqual(trainable["linear probe"], 8 * 5 + 5)
        self.assertEqual(trainable["VPT-shallow"], trainable["linear probe"] + 5 * 8)
        self.assertEqual(trainable["VPT-deep"], trainable["linear probe"] + 2 * 5 * 8)
        self.assertEqual(trainable["full fine-tune"], results["backbone_params"] + trainable["linear probe"])
