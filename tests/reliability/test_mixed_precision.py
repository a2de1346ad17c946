"""Every model under `mixed_float16` and `mixed_bfloat16`: one step with finite logs, float32 outputs.

`mixed_float16` (loss scaling) trains compiled, as users run it; `mixed_bfloat16` eagerly (tests/conftest.py).

(NaN inputs and NaN weights: tests/reliability/test_resume.py, on every model too.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import model_zoo
from tests.test_case import TestCase


class MixedPrecisionTest(TestCase):
    def check_policy(self, policy):
        for name in model_zoo.NAMES:
            with self.subTest(model=name, policy=policy):
                keras.config.set_dtype_policy(policy)
                try:
                    entry = model_zoo.build(name)
                    history = model_zoo.fit(entry, epochs=1, steps_per_epoch=1)
                    outputs = entry.model.predict(entry.inputs(3), verbose=0)
                finally:
                    keras.config.set_dtype_policy("float32")
                for key, values in history.history.items():
                    self.assertTrue(np.all(np.isfinite(values)), f"{name} {policy}: {key}={values}")
                for output in tf.nest.flatten(outputs):
                    self.assertEqual(
                        np.asarray(output).dtype,
                        np.float32,
                        f"{name} {policy}: output dtype {np.asarray(output).dtype}",
                    )

    @pytest.mark.compiled  # the loss-scaling step as users run it; bfloat16 runs eagerly (tests/conftest.py)
    def test_every_model_trains_a_float16_step_with_float32_outputs(self):
        self.check_policy("mixed_float16")

    def test_every_model_trains_a_bfloat16_step_with_float32_outputs(self):
        self.check_policy("mixed_bfloat16")
