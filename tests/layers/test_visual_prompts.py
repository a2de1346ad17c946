import numpy as np

from keras_transfer.layers import VisualPrompts
from keras_transfer.ops import prompt_init_limit
from tests.test_case import TestCase


class VisualPromptsTest(TestCase):
    def test_layer_basics(self):
        # export() and the mixed_float16 step run on prompted ViTs in tests/recipes/test_visual_prompt_tuning.py.
        self.run_layer_test(
            VisualPrompts,
            {"num_prompts": 3, "patch_dim": 12, "seed": 1},
            input_shape=(2, 5, 4),
            expected_output_shape=(2, 8, 4),
            expected_num_trainable_weights=1,
            run_mixed_precision=False,
            run_export=False,
        )

    def test_replace_and_remove_basics(self):
        self.run_layer_test(
            VisualPrompts,
            {"num_prompts": 2, "mode": "replace"},
            input_shape=(2, 5, 4),
            expected_output_shape=(2, 5, 4),
            expected_num_trainable_weights=1,
            run_training=False,
            run_mixed_precision=False,
            run_export=False,
        )
        self.run_layer_test(
            VisualPrompts,
            {"num_prompts": 2, "mode": "remove"},
            input_shape=(2, 5, 4),
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=0,
            run_mixed_precision=False,
            run_export=False,
        )

    def test_values_and_uniform_initialisation(self):
        x = np.random.default_rng(0).normal(size=(2, 3, 32)).astype("float32")
        layer = VisualPrompts(200, patch_dim=48, seed=0)
        y = np.asarray(layer(x))
        prompts = np.asarray(layer.prompts)
        self.assertAllClose(y[:, 0], x[:, 0])
        self.assertAllClose(y[:, 1:201], np.broadcast_to(prompts, (2, 200, 32)))
        self.assertAllClose(y[:, 201:], x[:, 1:])
        limit = prompt_init_limit(32, 48)
        self.assertLessEqual(np.abs(prompts).max(), limit)
        # U(-a, a): standard deviation a / sqrt(3), over 6,400 draws.
        self.assertAllClose(prompts.std(), limit / np.sqrt(3), rtol=0.05)

    def test_errors(self):
        self.assertRaisesValueError(["`num_prompts` must be a positive integer", "num_prompts=0"], VisualPrompts, 0)
        self.assertRaisesValueError("`mode` must be one of", VisualPrompts, 2, mode="deep")
        self.assertRaisesValueError("`patch_dim` must be a positive integer", VisualPrompts, 2, patch_dim=0)
        self.assertRaisesValueError("needs a (batch, length, dim) token sequence", VisualPrompts(2), np.zeros((2, 4)))
        self.assertRaisesValueError(
            "`insert_at` must leave room", VisualPrompts(2, mode="remove", insert_at=2), np.zeros((1, 3, 4))
        )
