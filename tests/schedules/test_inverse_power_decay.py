import os

import keras
import numpy as np

from keras_transfer.schedules import InversePowerDecay
from tests.test_case import TestCase


class InversePowerDecayTest(TestCase):
    def test_values_match_the_paper_formula(self):
        schedule = InversePowerDecay(0.01, decay_steps=200, alpha=10.0, beta=0.75)
        for step in (0, 1, 50, 100, 200, 400):
            p = min(step / 200, 1.0)
            self.assertAllClose(schedule(step), 0.01 / (1 + 10 * p) ** 0.75, rtol=1e-6)

    def test_serialization_and_use_in_a_saved_model(self):
        schedule = InversePowerDecay(0.05, decay_steps=10, alpha=5.0, beta=0.5)
        restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
        self.assertIsInstance(restored, InversePowerDecay)
        self.assertEqual(restored.get_config(), schedule.get_config())
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
        x = np.ones((4, 2), "float32")
        model.fit(x, np.zeros((4, 1), "float32"), epochs=3, verbose=0)
        # After 3 steps the optimizer uses lr(3).
        self.assertAllClose(model.optimizer.learning_rate, 0.05 / (1 + 5.0 * 0.3) ** 0.5, rtol=1e-6)
        path = os.path.join(self.get_temp_dir(), "m.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        config = reloaded.optimizer.get_config()["learning_rate"]
        self.assertEqual(config["config"], schedule.get_config())
        self.assertIn("InversePowerDecay", str(config))

    def test_errors(self):
        self.assertRaisesValueError(
            ["`initial_learning_rate`", "Received: initial_learning_rate=0"], InversePowerDecay, 0, 10
        )
        self.assertRaisesValueError(
            ["`decay_steps`", "Received: decay_steps=0", "total number"], InversePowerDecay, 0.1, 0
        )
        self.assertRaisesValueError(["`alpha`", "Received: alpha=-1"], InversePowerDecay, 0.1, 10, alpha=-1)
        self.assertRaisesValueError(["`beta`", "Received: beta=-0.5"], InversePowerDecay, 0.1, 10, beta=-0.5)
