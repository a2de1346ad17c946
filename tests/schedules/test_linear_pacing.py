import keras
import numpy as np

from keras_transfer.schedules import LinearPacing
from tests.schedules import pacing_reference as reference
from tests.test_case import TestCase


class LinearPacingTest(TestCase):
    def test_fraction_and_count_match_the_formula(self):
        for start, ramp, n in (("0.1", 90, 1000), ("0.25", 7, 40), ("1", 5, 9)):
            pacing = LinearPacing(float(start), ramp_steps=ramp)
            steps = np.arange(0, 2 * ramp + 1)
            expected = [reference.linear(int(s), start, ramp) for s in steps]
            with self.subTest(start=start, ramp=ramp):
                self.assertAllClose(pacing(steps), np.array([float(f) for f in expected]), rtol=1e-12, atol=1e-15)
                counts = np.asarray(pacing.num_examples(steps, n)).tolist()
                self.assertEqual(counts, [reference.count(f, n) for f in expected])
                full = reference.first_full_step(lambda s: reference.linear(s, start, ramp))
                self.assertEqual(pacing.full_data_step, full)

    def test_counts_grow_monotonically_to_the_whole_dataset(self):
        counts = np.asarray(LinearPacing(0.01, ramp_steps=300).num_examples(np.arange(400), 777))
        self.assertTrue(np.all(np.diff(counts) >= 0))
        self.assertEqual((int(counts[0]), int(counts[-1])), (8, 777))

    def test_serialization(self):
        pacing = LinearPacing(0.2, ramp_steps=30, total_steps=31, name="linear")
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pacing))
        self.assertEqual((type(restored), restored.get_config()), (LinearPacing, pacing.get_config()))

    def test_errors(self):
        self.assertRaisesValueError(
            ["`ramp_steps` must be at most 99", "total_steps=100", "Received: ramp_steps=100", "Lower"],
            LinearPacing,
            0.2,
            ramp_steps=100,
            total_steps=100,
        )
        self.assertRaisesValueError("Received: ramp_steps=0", LinearPacing, 0.2, ramp_steps=0)
