"""Permutation sets for the jigsaw pretext task (Noroozi & Favaro, 2016)."""

import functools
import math

import numpy as np

from keras_transfer.utils.validation import check_non_negative_int
from keras_transfer.utils.validation import check_positive_int

# Above this many tiles the candidates are a random pool (num_tiles! is too large to list).
_MAX_ENUMERATED_TILES = 9
_POOL_SIZE = 100_000


@functools.lru_cache(maxsize=4)
def _all_permutations(num_tiles):
    """All permutations in lexicographic order (as `itertools.permutations`), built in NumPy."""
    perms = np.zeros((1, 0), dtype="int8")
    for size in range(1, num_tiles + 1):
        blocks = []
        for first in range(size):
            rest = np.array([j for j in range(size) if j != first], dtype="int8")
            blocks.append(np.concatenate([np.full((len(perms), 1), first, "int8"), rest[perms]], axis=1))
        perms = np.concatenate(blocks, axis=0)
    return perms


def max_hamming_permutations(num_tiles, count, seed=0):
    """A set of `count` permutations of `num_tiles` tiles far apart in Hamming distance.

    The greedy selection of Noroozi & Favaro (Algorithm 1): the first permutation is
    drawn at random (from `seed`), then each next one is the candidate farthest from
    those already chosen. "Farthest" is the largest MINIMUM Hamming distance to the
    chosen set, ties broken by the largest total distance (the paper's criterion,
    which alone can pick a candidate close to one chosen permutation). The minimum
    pairwise distance of the set, what makes the puzzles distinguishable, is thus
    kept as large as the greedy order allows (greedy, not always optimal: it reaches
    the best possible minimum for up to 4 of 4 tiles' 24 orders, but gets 2 for 5 of
    them where 3 is possible). Candidates are all `num_tiles!`
    permutations up to 9 tiles, and a seeded random pool of 100,000 above.

    Args:
        num_tiles: number of tiles (>= 2), e.g. 9 for a 3x3 grid.
        count: number of permutations, at most `num_tiles!`.
        seed: non-negative int; the same seed gives the same set.

    Returns:
        int32 NumPy array `(count, num_tiles)`, one permutation of `range(num_tiles)` per row,
        all distinct.

    Raises:
        ValueError: if `num_tiles` < 2, `count` < 1 or `count` > `num_tiles!`, or `seed` is negative.

    Reference:
        Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving
        Jigsaw Puzzles", ECCV 2016.

    Example:

    >>> perms = keras_transfer.ops.max_hamming_permutations(3, 3, seed=0)
    >>> perms.shape
    (3, 3)
    >>> int(min((a != b).sum() for i, a in enumerate(perms) for b in perms[i + 1 :]))
    3
    """
    num_tiles = check_positive_int("num_tiles", num_tiles)
    if num_tiles < 2:
        raise ValueError(f"`num_tiles` must be at least 2. Received: num_tiles={num_tiles}")
    count = check_positive_int("count", count)
    seed = check_non_negative_int("seed", seed)
    rng = np.random.default_rng(seed)
    if num_tiles <= _MAX_ENUMERATED_TILES:
        total = math.factorial(num_tiles)
        if count > total:
            raise ValueError(
                f"`count` must be at most {num_tiles}! = {total}, the number of permutations of {num_tiles} tiles. "
                f"Received: count={count}. Ask for fewer permutations or use more tiles."
            )
        candidates = _all_permutations(num_tiles)
    else:
        candidates = np.argsort(rng.random((_POOL_SIZE, num_tiles)), axis=1).astype("int8")
        candidates = np.unique(candidates, axis=0)
        if count > len(candidates):
            raise ValueError(
                f"`count` must be at most {len(candidates)} for {num_tiles} tiles (the candidate pool). "
                f"Received: count={count}. Ask for fewer permutations."
            )
    columns = np.ascontiguousarray(candidates.T)  # one contiguous row per position: fast compares
    available = np.ones(len(candidates), dtype=bool)
    min_distance = np.full(len(candidates), num_tiles + 1, dtype="int32")
    total_distance = np.zeros(len(candidates), dtype="int64")
    index = int(rng.integers(len(candidates)))
    chosen = []
    for _ in range(count):
        chosen.append(index)
        available[index] = False
        distance = np.zeros(len(candidates), dtype="int32")
        for column in columns:
            distance += column != column[index]
        np.minimum(min_distance, distance, out=min_distance)
        total_distance += distance
        if len(chosen) == count:
            break
        # Largest minimum distance first, then the largest total (lexicographic on one key).
        key = np.where(available, min_distance.astype("int64") * (num_tiles * count + 1) + total_distance, -1)
        index = int(np.argmax(key))
    return candidates[chosen].astype("int32")
