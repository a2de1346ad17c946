import numpy as np

from keras_transfer.ops import insert_prompts
from keras_transfer.ops import prompt_init_limit
from keras_transfer.ops import remove_prompts
from keras_transfer.ops import replace_prompts
from tests.test_case import TestCase


class VisualPromptOpsTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.tokens = rng.normal(size=(3, 6, 4)).astype("float32")
        self.prompts = rng.normal(size=(2, 4)).astype("float32")

    def test_against_numpy(self):
        tiled = np.broadcast_to(self.prompts, (3, 2, 4))
        for k in (0, 1, 6):
            expected = np.concatenate([self.tokens[:, :k], tiled, self.tokens[:, k:]], axis=1)
            self.assertAllClose(insert_prompts(self.tokens, self.prompts, k), expected)
            self.assertAllClose(remove_prompts(expected, 2, k), self.tokens)
        replaced = self.tokens.copy()
        replaced[:, 1:3] = self.prompts
        self.assertAllClose(replace_prompts(self.tokens, self.prompts), replaced)

    def test_init_limit_is_the_papers_xavier_bound(self):
        # The reference code: sqrt(6 / (3 * patch * patch + dim)) for RGB patches.
        self.assertAlmostEqual(prompt_init_limit(768, 3 * 16 * 16), np.sqrt(6.0 / (3 * 16 * 16 + 768)))
        self.assertAlmostEqual(prompt_init_limit(8), np.sqrt(6.0 / 16))

    def test_errors(self):
        self.assertRaisesValueError("`num_prompts` must be a positive integer", remove_prompts, self.tokens, 0)
        self.assertRaisesValueError(
            "`insert_at` must be a non-negative integer", insert_prompts, self.tokens, self.prompts, -1
        )
        self.assertRaisesValueError(
            ["`insert_at` must leave room", "insert_at=7"], insert_prompts, self.tokens, self.prompts, 7
        )
        self.assertRaisesValueError(
            "`tokens` must be a (batch, length, dim)", insert_prompts, self.tokens[0], self.prompts
        )
        self.assertRaisesValueError(
            "`prompts` must be a (num_prompts, dim)", insert_prompts, self.tokens, self.prompts[:, :3]
        )
        self.assertRaisesValueError(
            "`prompts` must be a (num_prompts, dim)", replace_prompts, self.tokens, self.prompts[0]
        )
        self.assertRaisesValueError("`hidden_dim` must be a positive integer", prompt_init_limit, 0)
