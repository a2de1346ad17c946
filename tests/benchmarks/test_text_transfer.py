"""benchmarks/text_transfer.py --quick, so it cannot rot."""

import unittest

from benchmarks import text_transfer
from tests.test_case import TestCase

try:
    import keras_hub
except ImportError:  # keras-hub is an optional extra (`pip install keras-transfer[hub]`)
    keras_hub = None


class TextTransferQuickTest(TestCase):
    def assertAccuracies(self, rows):
        for name, values in rows.items():
            self.assertLen(values, 1)
            self.assertTrue(0.0 <= values[0] <= 1.0, f"{name}: {values}")

    def test_nsp_and_vocabulary_quick(self):
        out = text_transfer.main(["--quick", "--parts", "nsp", "vocabulary"])
        nsp = out["nsp"]
        self.assertEqual(
            sorted(nsp),
            [
                "cloze + next sentence: held-out masked accuracy",
                "cloze + next sentence: held-out next-sentence accuracy",
                "cloze only: held-out masked accuracy",
            ],
        )
        self.assertAccuracies(nsp)
        oov = out["vocabulary"].pop("oov")
        unk, extended = oov.values()
        self.assertLess(extended, unk)  # the 20 added words were out of the capped vocabulary
        self.assertGreater(unk, 0.05)
        self.assertAccuracies(out["vocabulary"])

    @unittest.skipIf(keras_hub is None, "keras-hub is not installed (optional extra `hub`)")
    def test_placement_quick(self):
        out = text_transfer.main(["--quick", "--parts", "placement", "--adapter-learning-rates", "2e-3"])
        out = out["placement"]
        trainable = out.pop("trainable")
        self.assertEqual(
            list(trainable),
            ["full fine-tuning", "head only", "adapters after each block", "Houlsby adapters inside each block"],
        )
        head, after = trainable["head only"], trainable["adapters after each block"]
        houlsby, full = trainable["Houlsby adapters inside each block"], trainable["full fine-tuning"]
        self.assertEqual(head, 32 * 5 + 5)  # the softmax Dense on the mean-pooled 32 features
        self.assertEqual(
            after - head, (2 * 32 * 8 + 32 + 8) + 2 * 32
        )  # one adapter + the embeddings' LayerNorm (block frozen whole)
        self.assertEqual(houlsby - head, 2 * (2 * 32 * 8 + 32 + 8) + 3 * 2 * 32)  # two adapters + 3 LayerNorms
        self.assertLess(houlsby, full)
        self.assertIn("full fine-tuning @ 5", out)  # one rate for full fine-tuning, one row per swept rate else
        self.assertIn("Houlsby adapters inside each block, lr 0.002 @ 5", out)
        self.assertLen(out, 1 + 3)
        self.assertAccuracies(out)
