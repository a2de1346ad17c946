"""The when-to-transfer benchmark's --quick mode, and its decision rule on hand-made cells."""

import contextlib
import io

import numpy as np

from benchmarks import when_to_transfer
from tests.test_case import TestCase


class WhenToTransferQuickTest(TestCase):
    def test_quick(self):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            result = when_to_transfer.main(["--quick"])
        self.assertEqual(result["targets"], ["similar", "digits-M"])
        keys = {(t, 2, m) for t in result["targets"] for m in when_to_transfer.METHODS}
        self.assertEqual(set(result["scores"]), keys)
        for values in result["scores"].values():
            self.assertLen(values, 1)
            self.assertTrue(0.0 <= values[0] <= 1.0)
        # One decision row per cell, naming a measured method as the best.
        self.assertLen(result["decisions"], 2)
        for row in result["decisions"]:
            self.assertTrue(set(row[2].split(" = ")) <= set(when_to_transfer.METHODS))
        text = printed.getvalue()
        self.assertIn("(a) Target test accuracy", text)
        self.assertIn("(b) The decision table the measurement supports", text)

    def test_decide(self):
        cell = {
            "linear probe": [0.60, 0.70, 0.80],
            "block3 probe": [0.10, 0.20, 0.30],
            "block2 probe": [0.40, 0.45, 0.50],
            "fine-tune": [0.75, 0.78, 0.90],
            "from scratch": [0.20, 0.30, 0.40],
        }
        # Best median is fine-tune (0.78): the recommendation holds where fine-tune is recommended.
        self.assertEqual(when_to_transfer.decide(cell, "large", "similar"), ("fine-tune", "fine-tune", "yes"))
        # Linear probe's best seed (0.80) reaches fine-tune's worst (0.75): a tie within the seed spread.
        best, recommended, held = when_to_transfer.decide(cell, "small", "similar")
        self.assertEqual((best, recommended), ("fine-tune", "linear probe or block3 probe"))
        self.assertEqual(held, "tie (ranges overlap)")
        # Equal medians: both methods are named best, and either one being recommended is enough.
        tied = dict(cell, **{"from scratch": [0.70, 0.78, 0.79]})
        self.assertEqual(
            when_to_transfer.decide(tied, "large", "digits-M"),
            ("fine-tune = from scratch", "from scratch or fine-tune", "yes"),
        )
        # The block2 probe's best seed (0.50) stays below fine-tune's worst: the recommendation failed.
        self.assertEqual(when_to_transfer.decide(cell, "small", "digits-M")[2], "no")
        # A medium size has no recommendation.
        self.assertEqual(when_to_transfer.decide(cell, "medium", "similar")[1:], ("–", "–"))
        self.assertEqual(when_to_transfer.size_names([3, 10, 50]), {3: "small", 10: "medium", 50: "large"})

    def test_targets(self):
        (x, y), (x_test, _) = when_to_transfer.target_split("similar", 2, seed=0)
        (xi, yi), (xi_test, _) = when_to_transfer.target_split("inverted", 2, seed=0)
        (xm, ym), _ = when_to_transfer.target_split("digits-M", 2, seed=0)
        self.assertEqual(x.shape, (10, 16, 16, 3))
        np.testing.assert_array_equal(xi, 255.0 - x)
        np.testing.assert_array_equal(xi_test, 255.0 - x_test)
        # The same labelled examples in every setting (digits-M keeps load_digits' split).
        np.testing.assert_array_equal(y, yi)
        np.testing.assert_array_equal(y, ym)
        self.assertEqual(sorted(y.tolist()), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
        # digits-M is a different picture of the same digit: colour, not the grey repeated.
        self.assertGreater(float(np.abs(xm[..., 0] - xm[..., 1]).max()), 0.0)
        np.testing.assert_array_equal(x[..., 0], x[..., 1])
