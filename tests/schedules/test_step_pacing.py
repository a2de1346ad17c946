import keras
import numpy as np

from keras_transfer.schedules import StepPacing
from tests.schedules import pacing_reference as reference
from tests.test_case import TestCase


class StepPacingTest(TestCase):
    def test_fraction_and_count_match_the_paper_formula(self):
        for start, length, n in (("0.2", 100, 1000), ("0.33", 7, 10), ("0.05", 1, 3)):
            pacing = StepPacing(float(start), step_length=length)
            steps = np.arange(0, 3 * length + 2)
            expected = [reference.single_step(int(s), start, length) for s in steps]
            with self.subTest(start=start, length=length):
                self.assertAllClose(pacing(steps), np.array([float(f) for f in expected]), rtol=1e-12, atol=0)
                counts = np.asarray(pacing.num_examples(steps, n)).tolist()
                self.assertEqual(counts, [reference.count(f, n) for f in expected])
                self.assertEqual(pacing.full_data_step, length)

    def test_serialization(self):
        pacing = StepPacing(0.3, step_length=12, total_steps=50)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pacing))
        self.assertEqual((type(restored), restored.get_config()), (StepPacing, pacing.get_config()))

    def test_errors(self):
        self.assertRaisesValueError(
            ["`step_length` must be at most 49", "total_steps=50", "Received: step_length=50"],
            StepPacing,
            0.3,
            step_length=50,
            total_steps=50,
        )
        self.assertRaisesValueError("Received: starting_fraction=-0.1", StepPacing, -0.1)
        self.assertRaisesValueError("Received: step_length=2.5", StepPacing, 0.1, step_length=2.5)
