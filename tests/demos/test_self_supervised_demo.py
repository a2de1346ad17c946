import os

from keras_transfer.demos import self_supervised
from tests.test_case import TestCase


class SelfSupervisedDemoTest(TestCase):
    def test_quick_run(self):
        out = self.get_temp_dir()
        results = self_supervised.run(out, quick=True)
        self.assertEqual(set(results), {"random init", "simclr", "rotation"})
        for scores in results.values():
            self.assertTrue(0.0 <= scores["2_labels_per_class"] <= 1.0)
            self.assertGreater(scores["all_labels"], 0.3)
        self.assertTrue(os.path.exists(os.path.join(out, "linear_probe_2_labels.png")))

    def test_every_method_pretrains(self):
        from keras_transfer.datasets import load_digits

        (x, y), _ = load_digits(image_size=8, channels=1, seed=0)
        for method in ("denoising", "supervised"):
            encoder = self_supervised.pretrain(method, x[:64], y[:64], epochs=1, image_size=8, widths=(4,))
            self.assertEqual(encoder.output_shape, (None, 4))

    def test_unknown_method(self):
        self.assertRaisesValueError(
            ["`method` must be one of", "method='byol'"], self_supervised.pretrain, "byol", None, None, epochs=1
        )
