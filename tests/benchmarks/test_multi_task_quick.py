"""Runs the multi-task benchmark with --quick in-process (seconds)."""

import math

from benchmarks import multi_task_digits
from keras_transfer import datasets
from tests.test_case import TestCase


class MultiTaskBenchmarkQuickTest(TestCase):
    def test_multi_task_digits_quick(self):
        result = multi_task_digits.main(["--quick"])
        methods = ["single-task B", "sequential A→B", "multi-task (uncertainty)"]
        self.assertEqual(result["methods"], methods)
        self.assertEqual(sorted(result["b_accuracy"]), sorted((5, m) for m in methods))
        # Task A is scored for the two models that keep an A head, not for single-task B.
        self.assertEqual(sorted(result["a_accuracy"]), sorted((5, m) for m in methods[1:]))
        for scores in list(result["b_accuracy"].values()) + list(result["a_accuracy"].values()):
            self.assertLen(scores, 1)
            self.assertTrue(0.0 <= scores[0] <= 1.0)
        # Steps: 25 B examples in batches of 16 (2 steps); sequential adds one epoch over A in batches
        # of 32; multi-task runs one epoch of ceil((n_A + 25) / 32) mixed batches.
        n_a = len(datasets.digits_source_target(image_size=16, labels_per_class=5, seed=0).source_train[0])
        self.assertEqual(result["steps"][(5, "single-task B")], 2)
        self.assertEqual(result["steps"][(5, "sequential A→B")], math.ceil(n_a / 32) + 2)
        self.assertEqual(result["steps"][(5, "multi-task (uncertainty)")], math.ceil((n_a + 25) / 32))
