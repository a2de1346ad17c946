import os

from keras_transfer.demos import text
from tests.test_case import TestCase


class TextDemoTest(TestCase):
    def test_quick_demo(self):
        out = self.get_temp_dir()
        results = text.run(out, quick=True)
        self.assertTrue(os.path.exists(os.path.join(out, "text_cloze.png")))
        for key in ("from scratch", "cloze pre-trained"):
            self.assertTrue(0.0 <= results[key] <= 1.0)
        self.assertAlmostEqual(results["gain"], results["cloze pre-trained"] - results["from scratch"])
        self.assertTrue(0.0 <= results["masked_accuracy"] <= 1.0)

    def test_classifier_starts_from_the_pretrained_weights(self):
        import numpy as np

        encoder = text.TextTransformerEncoder(50, 8, embedding_dim=8, num_layers=1, num_heads=2, pooling=None)
        encoder.build((None, 8))
        model = text.classifier(encoder, 5)
        pooled = model.get_layer("pooled_encoder")
        self.assertEqual(pooled.pooling, "mean")
        for a, b in zip(pooled.get_weights(), encoder.get_weights()):
            np.testing.assert_array_equal(a, b)
        self.assertEqual(model.output_shape, (None, 5))
