import numpy as np

from keras_transfer.ops import mask_tokens
from tests.test_case import TestCase


class MaskTokensTest(TestCase):
    def test_bert_proportions_and_untouched_positions(self):
        rng = np.random.default_rng(0)
        ids = rng.integers(5, 1000, size=(200, 100))
        ids[:, 80:] = 0  # padding
        masked, selected = mask_tokens(ids, seed=(3, 7), mask_token_id=4, vocabulary_size=1000, first_random_id=5)
        masked, selected = masked.numpy(), selected.numpy().astype(bool)
        self.assertFalse(selected[:, 80:].any())  # padding never selected
        np.testing.assert_array_equal(masked[~selected], ids[~selected])  # the rest is untouched
        n = 200 * 80
        rate = selected.sum() / n
        self.assertLess(abs(rate - 0.15), 4 * np.sqrt(0.15 * 0.85 / n))
        chosen = selected.sum()
        as_mask = (masked[selected] == 4).mean()
        kept = (masked[selected] == ids[selected]).mean()
        # 80 % mask, 10 % kept, 10 % random (a random id equals the original with probability ~1/995).
        for observed, expected in ((as_mask, 0.8), (kept, 0.1 + 0.1 / 995)):
            self.assertLess(abs(observed - expected), 4 * np.sqrt(expected * (1 - expected) / chosen))
        random_ids = masked[selected & (masked != 4) & (masked != ids)]
        self.assertTrue(np.all((random_ids >= 5) & (random_ids < 1000)))
        self.assertLess(abs(len(random_ids) / chosen - 0.1), 4 * np.sqrt(0.09 / chosen))

    def test_stateless_and_seeded(self):
        ids = np.arange(1, 401).reshape(4, 100) % 50 + 2
        a = mask_tokens(ids, seed=(1, 2), mask_token_id=1, vocabulary_size=60)
        b = mask_tokens(ids, seed=(1, 2), mask_token_id=1, vocabulary_size=60)
        c = mask_tokens(ids, seed=(1, 3), mask_token_id=1, vocabulary_size=60)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        self.assertFalse(np.array_equal(a[1].numpy(), c[1].numpy()))
        self.assertEqual(a[0].dtype, ids.dtype)

    def test_unmaskable_ids_and_full_rate(self):
        ids = np.array([[0, 1, 2, 3, 4, 5]])
        _, selected = mask_tokens(ids, (0, 0), mask_token_id=1, vocabulary_size=6, mask_rate=1.0, unmaskable_ids=(0, 1))
        self.assertEqual(selected.numpy().tolist(), [[0, 0, 1, 1, 1, 1]])

    def test_bad_arguments(self):
        ids = np.array([[2, 3]])
        self.assertRaisesValueError(["`mask_rate`", "0"], mask_tokens, ids, (0, 0), 1, 10, mask_rate=0)
        self.assertRaisesValueError(["`mask_rate`", "1.5"], mask_tokens, ids, (0, 0), 1, 10, mask_rate=1.5)
        self.assertRaisesValueError(["`mask_token_id`", "10"], mask_tokens, ids, (0, 0), 10, 10)
        self.assertRaisesValueError(["`vocabulary_size`", "1"], mask_tokens, ids, (0, 0), 0, 1)
        self.assertRaisesValueError(["`first_random_id`", "12"], mask_tokens, ids, (0, 0), 1, 10, first_random_id=12)
        # 0 is padding: a [MASK] written as 0 would be dropped from attention.
        self.assertRaisesValueError(["`mask_token_id`", "[1, vocabulary_size=10)", "mask_token_id=0"], mask_tokens,
                                    ids, (0, 0), 0, 10)  # fmt: skip
        self.assertRaisesValueError(
            ["`first_random_id`", "integer", "first_random_id=2.5"], mask_tokens, ids, (0, 0), 1, 10,
            first_random_id=2.5,
        )  # fmt: skip
        masked, _ = mask_tokens(ids, (0, 0), np.int64(1), np.int64(10), first_random_id=np.int32(2))
        self.assertEqual(masked.shape, (1, 2))  # NumPy integers are ids
