import contextlib
import io

import numpy as np

from keras_transfer.demos import meta_learning
from tests.test_case import TestCase


class MetaLearningDemoTest(TestCase):
    def test_quick_demo(self):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            results = meta_learning.run(self.get_temp_dir(), quick=True)
        # Even after 3000 meta-iterations MAML adapts better than the pretrained regressor.
        self.assertLess(results["MAML"][10], results["pretrained + fine-tune"][10])
        text = printed.getvalue()
        # The paper's numbers and the medians are printed beside the measured means.
        self.assertIn("MAML (paper)", text)
        self.assertIn("0.67", text)
        self.assertIn("(median)", text)
        self.assertIn("far from the paper's 70,000", text)
        # A mean that rises with more steps is explained, never printed silently.
        for name, scores in results.items():
            for a, b in zip((1, 5), (5, 10)):
                if scores[b] > scores[a]:
                    self.assertIn(f"{name}: the mean rises from {a} to {b} steps", text)

    def test_non_monotone_note_explains_a_rising_mean(self):
        # 99 tasks improve by 0.1 at each step count; one overshoots by +30 from 1 to 5 steps.
        per_task = {1: np.full(100, 1.0), 5: np.full(100, 0.9), 10: np.full(100, 0.8)}
        per_task[5][0] = 31.0
        per_task[10][0] = 0.8
        notes = meta_learning._non_monotone_note("MAML", per_task)
        self.assertLen(notes, 1)
        self.assertIn("MAML: the mean rises from 1 to 5 steps (1.000 -> 1.201)", notes[0])
        self.assertIn("99% of the tasks improve and the median falls (1.000 -> 0.900)", notes[0])
        self.assertIn("the worst 1 % (1 tasks) add +0.300 to the mean", notes[0])
        falling = {1: np.full(10, 1.0), 5: np.full(10, 0.5), 10: np.full(10, 0.4)}
        self.assertEqual(meta_learning._non_monotone_note("MAML", falling), [])
