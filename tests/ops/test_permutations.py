"""max_hamming_permutations against brute force and an independent greedy implementation."""

import itertools

import numpy as np

from keras_transfer.ops import max_hamming_permutations
from tests.test_case import TestCase


def min_pairwise_distance(perms):
    return min(sum(a != b for a, b in zip(p, q)) for p, q in itertools.combinations(perms.tolist(), 2))


def best_min_distance(num_tiles, count):
    """Brute force: the largest minimum pairwise Hamming distance of any `count` permutations."""
    perms = list(itertools.permutations(range(num_tiles)))
    return max(min_pairwise_distance(np.array(subset)) for subset in itertools.combinations(perms, count))


def greedy_reference(num_tiles, count, first):
    """The greedy selection written out in plain Python: next = argmax over unused candidates
    (itertools order, first on ties) of (min distance to chosen, total distance to chosen)."""
    candidates = list(itertools.permutations(range(num_tiles)))
    chosen = [tuple(first)]
    while len(chosen) < count:
        best, best_key = None, None
        for c in candidates:
            if c in chosen:
                continue
            d = [sum(a != b for a, b in zip(c, s)) for s in chosen]
            key = (min(d), sum(d))
            if best_key is None or key > best_key:
                best, best_key = c, key
        chosen.append(best)
    return np.array(chosen)


class MaxHammingPermutationsTest(TestCase):
    def test_reaches_the_brute_force_optimum_on_small_cases(self):
        for num_tiles, count in ((3, 2), (3, 3), (4, 2), (4, 3), (4, 4)):
            for seed in (0, 1):
                perms = max_hamming_permutations(num_tiles, count, seed=seed)
                self.assertEqual(min_pairwise_distance(perms), best_min_distance(num_tiles, count))

    def test_matches_plain_python_greedy(self):
        for num_tiles, count, seed in ((4, 7, 0), (5, 12, 3)):
            perms = max_hamming_permutations(num_tiles, count, seed=seed)
            self.assertAllClose(perms, greedy_reference(num_tiles, count, perms[0]), atol=0)

    def test_valid_distinct_and_deterministic(self):
        perms = max_hamming_permutations(5, 20, seed=7)
        self.assertEqual(perms.shape, (20, 5))
        self.assertEqual(perms.dtype, np.int32)
        self.assertTrue(all(sorted(p) == list(range(5)) for p in perms.tolist()))
        self.assertEqual(len({tuple(p) for p in perms.tolist()}), 20)
        self.assertAllClose(max_hamming_permutations(5, 20, seed=7), perms, atol=0)
        self.assertNotAllClose(max_hamming_permutations(5, 20, seed=8), perms)
        pooled = max_hamming_permutations(16, 4, seed=0)  # random candidate pool above 9 tiles
        self.assertTrue(all(sorted(p) == list(range(16)) for p in pooled.tolist()))
        self.assertGreaterEqual(min_pairwise_distance(pooled), 14)

    def test_errors(self):
        self.assertRaisesValueError(["`count` must be at most 3! = 6", "count=7"], max_hamming_permutations, 3, 7)
        self.assertRaisesValueError(["`num_tiles` must be at least 2", "num_tiles=1"], max_hamming_permutations, 1, 1)
        self.assertRaisesValueError(["`count`", "count=0"], max_hamming_permutations, 3, 0)
        self.assertRaisesValueError(["`seed`", "seed=-1"], max_hamming_permutations, 3, 2, seed=-1)
