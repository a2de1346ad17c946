import os

from keras_transfer.demos import clip
from tests.test_case import TestCase


class ClipDemoTest(TestCase):
    def test_quick_demo(self):
        out = self.get_temp_dir()
        results = clip.run(out, quick=True)
        self.assertTrue(os.path.exists(os.path.join(out, "clip_zero_shot.png")))
        # Even the quick run transfers to held-out prompts far above chance (0.1).
        self.assertGreater(results["zero_shot_ensemble"], 0.6)
        self.assertGreater(results["text_to_image_recall@1"], 0.6)
        self.assertGreater(results["train_seconds"], 0)  # reported; timings belong in benchmarks/
