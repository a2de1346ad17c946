import json

import keras
import numpy as np

from keras_transfer.schedules import FixedExponentialPacing
from tests.schedules import pacing_reference as reference
from tests.test_case import TestCase

# (starting_fraction, increase, step_length, N): parameters given as decimal strings, so that the
# reference computes with the exact rationals the user wrote.
CASES = [("0.04", "1.9", 7, 1000), ("0.1", "2", 5, 50), ("0.25", "2", 3, 100), ("0.3", "1.5", 10, 999)]


class FixedExponentialPacingTest(TestCase):
    def test_fraction_and_count_match_the_paper_formula(self):
        for start, increase, length, n in CASES:
            pacing = FixedExponentialPacing(float(start), float(increase), length)
            steps = np.arange(0, 30 * length)
            fractions = np.asarray(pacing(steps))
            counts = np.asarray(pacing.num_examples(steps, n))
            expected = [reference.fixed_exponential(int(s), start, increase, length) for s in steps]
            with self.subTest(start=start, increase=increase, length=length):
                self.assertAllClose(fractions, np.array([float(f) for f in expected]), rtol=1e-12, atol=0)
                self.assertEqual(counts.tolist(), [reference.count(f, n) for f in expected])
                full = reference.first_full_step(lambda s: reference.fixed_exponential(s, start, increase, length))
                self.assertEqual(pacing.full_data_step, full)
                self.assertEqual(int(pacing.num_examples(full, n)), n)
                self.assertLess(int(pacing.num_examples(full - 1, n)), n)

    def test_starting_with_the_whole_dataset(self):
        pacing = FixedExponentialPacing(1.0, increase=1.0, step_length=4)
        self.assertEqual(pacing.full_data_step, 0)
        self.assertEqual(np.asarray(pacing.num_examples(np.arange(5), 7)).tolist(), [7] * 5)

    def test_tensor_steps_and_serialization(self):
        pacing = FixedExponentialPacing(0.1, 2.0, 5, total_steps=40, name="pace")
        config = keras.saving.serialize_keras_object(pacing)
        restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
        self.assertIsInstance(restored, FixedExponentialPacing)
        self.assertEqual(restored.get_config(), pacing.get_config())
        steps = keras.ops.arange(0, 40)
        self.assertAllClose(restored(steps), pacing(steps), atol=0, rtol=0)
        self.assertEqual(repr(restored), repr(pacing))

    def test_errors(self):
        self.assertRaisesValueError(
            ["`increase` must be a number > 1", "never reaches", "Received: increase=1.0"],
            FixedExponentialPacing,
            0.1,
            1.0,
            10,
        )
        # 0.1 * 2**4 >= 1: the whole dataset from step 4 * step_length; total_steps=40 allows step_length <= 9.
        self.assertRaisesValueError(
            ["`step_length` must be at most 9", "total_steps=40", "Received: step_length=10", "step 40", "Lower"],
            FixedExponentialPacing,
            0.1,
            2.0,
            10,
            total_steps=40,
        )
        FixedExponentialPacing(0.1, 2.0, 9, total_steps=40)
        self.assertRaisesValueError(
            ["`starting_fraction`", "(0, 1]", "Received: starting_fraction=0"], FixedExponentialPacing, 0, 2.0, 5
        )
        self.assertRaisesValueError("Received: starting_fraction=1.5", FixedExponentialPacing, 1.5, 2.0, 5)
        self.assertRaisesValueError(["`step_length`", "Received: step_length=0"], FixedExponentialPacing, 0.1, 2.0, 0)
        self.assertRaisesValueError(
            ["`total_steps`", "Received: total_steps=0"], FixedExponentialPacing, 0.1, 2.0, 5, total_steps=0
        )
        self.assertRaisesValueError(["`num_examples`", "Received: num_examples=0"], self._count, 0)

    @staticmethod
    def _count(n):
        return FixedExponentialPacing(0.1, 2.0, 5).num_examples(0, n)
