"""benchmarks/text_cloze.py --quick, so it cannot rot."""

from benchmarks import text_cloze
from tests.test_case import TestCase


class TextClozeQuickTest(TestCase):
    def test_quick(self):
        out = text_cloze.main(["--quick"])
        self.assertEqual(set(out["results"]), set(text_cloze.METHODS))
        for per_budget in out["results"].values():
            self.assertEqual(list(per_budget), [5])
            self.assertTrue(all(0.0 <= a <= 1.0 for a in per_budget[5]))
        self.assertEqual(len(out["masked_accuracy"]), 1)
        # Bag of words on 25 labelled sentences already beats a uniform guess (0.2).
        self.assertGreater(out["results"]["TF-IDF"][5][0], 0.2)
