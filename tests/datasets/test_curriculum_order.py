import numpy as np

from keras_transfer.datasets import CurriculumOrder
from keras_transfer.datasets import difficulty_order
from tests.test_case import TestCase


class DifficultyOrderTest(TestCase):
    def test_easiest_first_and_stable_for_ties(self):
        rng = np.random.default_rng(0)
        scores = rng.integers(0, 5, size=50).astype("float64")
        order = difficulty_order(scores)
        # Reference: sort (score, index) pairs.
        expected = [i for _, i in sorted((s, i) for i, s in enumerate(scores))]
        self.assertEqual(order.tolist(), expected)
        self.assertEqual(difficulty_order(np.zeros(4)).tolist(), [0, 1, 2, 3])
        self.assertEqual(difficulty_order([[0.3], [0.1]]).tolist(), [1, 0])

    def test_class_balanced_order(self):
        rng = np.random.default_rng(0)
        labels = rng.choice(4, size=300, p=[0.5, 0.25, 0.15, 0.1])
        scores = rng.normal(size=300) + labels  # class 0 is the easiest
        plain = difficulty_order(scores)
        balanced = difficulty_order(scores, labels=labels)
        self.assertEqual(sorted(balanced.tolist()), list(range(300)))
        share = np.bincount(labels) / 300
        worst_plain, worst_balanced = 0.0, 0.0
        for k in range(1, 301):
            worst_plain = max(worst_plain, np.abs(np.bincount(labels[plain[:k]], minlength=4) - k * share).max())
            worst_balanced = max(
                worst_balanced, np.abs(np.bincount(labels[balanced[:k]], minlength=4) - k * share).max()
            )
        # Every prefix holds each class in proportion (within 2 examples); the plain sort does not.
        self.assertLess(worst_balanced, 2.0)
        self.assertGreater(worst_plain, 20.0)
        # Within a class, the balanced order keeps the easiest-first order of the scores.
        for label in range(4):
            members = balanced[labels[balanced] == label]
            self.assertEqual(members.tolist(), plain[labels[plain] == label].tolist())
        self.assertRaisesValueError(
            ["`labels` must hold one class label per example (300)"], difficulty_order, scores, labels=labels[:5]
        )

    def test_errors(self):
        self.assertRaisesValueError(["`difficulty` must hold finite scores", "1 NaN"], difficulty_order, [0.1, np.nan])
        self.assertRaisesValueError(["one score per example (3)", "2 scores"], difficulty_order, [0.1, 0.2], 3)
        self.assertRaisesValueError(["non-empty 1-D", "shape (0,)"], difficulty_order, [])
        self.assertRaisesValueError(["non-empty 1-D", "shape (2, 2)"], difficulty_order, np.zeros((2, 2)))
        self.assertRaisesValueError("one number per example", difficulty_order, ["easy", "hard"])

    def test_curriculum_order_updates(self):
        order = CurriculumOrder([3.0, 1.0, 2.0])
        self.assertEqual((order.order.numpy().tolist(), order.updates, order.num_examples), ([1, 2, 0], 0, 3))
        order.update([0.0, 2.0, 1.0])
        self.assertEqual((order.order.numpy().tolist(), order.updates), ([0, 2, 1], 1))
        self.assertAllClose(order.difficulty, [0.0, 2.0, 1.0])
        self.assertRaisesValueError("one score per example (3)", order.update, [1.0, 2.0])
        self.assertRaisesValueError("finite", order.update, [1.0, np.inf, 0.0])
        self.assertEqual(order.order.numpy().tolist(), [0, 2, 1])  # unchanged by a rejected update
        balanced = CurriculumOrder([0.1, 0.2, 0.3, 0.9], labels=[0, 0, 1, 1])
        self.assertEqual(balanced.order.numpy().tolist(), [0, 2, 1, 3])
        balanced.update([0.2, 0.1, 0.9, 0.3])
        self.assertEqual(balanced.order.numpy().tolist(), [1, 3, 0, 2])
