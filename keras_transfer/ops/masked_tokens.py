"""BERT's token masking for cloze (masked language model) pre-training, stateless and seeded."""

import numbers

import tensorflow as tf

from keras_transfer.utils import validation


def _is_id(value):
    """An integer (NumPy integers included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(mask_rate, mask_token_id, vocabulary_size, unmaskable_ids, first_random_id):
    validation.check_fraction("mask_rate", mask_rate, inclusive_low=False, inclusive_high=True)
    vocabulary_size = validation.check_int_at_least("vocabulary_size", vocabulary_size, 2)
    if not _is_id(mask_token_id) or not 1 <= mask_token_id < vocabulary_size:
        raise ValueError(
            f"`mask_token_id` must be an id in [1, vocabulary_size={vocabulary_size}) (0 is padding: the "
            f"encoder does not attend to it). Received: mask_token_id={mask_token_id!r}. Reserve one "
            "vocabulary entry for the mask token."
        )
    if not _is_id(first_random_id) or not 0 <= first_random_id < vocabulary_size:
        raise ValueError(
            f"`first_random_id` must be an integer id in [0, vocabulary_size={vocabulary_size}). "
            f"Received: first_random_id={first_random_id!r}"
        )
    return tuple(int(i) for i in unmaskable_ids)


def mask_tokens(
    token_ids,
    seed,
    mask_token_id,
    vocabulary_size,
    mask_rate=0.15,
    unmaskable_ids=(0,),
    first_random_id=0,
):
    """Selects positions to predict and corrupts them as BERT does (80 % mask, 10 % random, 10 % kept).

    Each position whose id is not in `unmaskable_ids` (padding, by default) is selected
    with probability `mask_rate`; a selected position becomes `mask_token_id` with
    probability 0.8, a uniformly random id in `[first_random_id, vocabulary_size)` with
    probability 0.1, and keeps its id otherwise. The model is trained to predict the
    original ids at the selected positions only. The draws are stateless: the same
    `seed` gives the same masks (pass `(seed, step)` for a new mask at every step).

    Args:
        token_ids: int tensor `(batch, length)`.
        seed: a stateless seed, a shape-(2,) int tensor or pair of ints.
        mask_token_id: the id that replaces 80 % of the selected tokens.
        vocabulary_size: number of ids.
        mask_rate: share of maskable positions selected, in (0, 1].
        unmaskable_ids: ids never selected (padding, special tokens).
        first_random_id: smallest id a random replacement can take (skip special ids).

    Returns:
        `(masked_ids, selected)`: the corrupted ids (dtype of `token_ids`) and a float32
        `(batch, length)` tensor, 1 at the positions to predict.

    Raises:
        ValueError: if `mask_rate` lies outside (0, 1], `vocabulary_size` is below 2,
            or `mask_token_id` / `first_random_id` is not an id of the vocabulary.

    Reference:
        Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", NAACL 2019 (§3.1, Task #1).

    Example:

    >>> ids = np.array([[5, 6, 7, 8, 0, 0]])
    >>> masked, selected = keras_transfer.ops.mask_tokens(
    ...     ids, seed=(1, 2), mask_token_id=1, vocabulary_size=10, mask_rate=0.5)
    >>> selected.numpy()[0, 4:].tolist()  # padding is never selected
    [0.0, 0.0]
    >>> bool(np.all(np.where(selected.numpy() == 0, masked.numpy() == ids, True)))
    True
    """
    unmaskable = _check(mask_rate, mask_token_id, vocabulary_size, unmaskable_ids, first_random_id)
    token_ids = tf.convert_to_tensor(token_ids)
    seed = tf.cast(tf.convert_to_tensor(seed), "int64")
    shape = tf.shape(token_ids)
    maskable = tf.ones_like(token_ids, dtype="bool")
    for special in unmaskable:
        maskable = tf.logical_and(maskable, tf.not_equal(token_ids, tf.cast(special, token_ids.dtype)))
    draws = [tf.random.stateless_uniform(shape, tf.random.experimental.stateless_fold_in(seed, k)) for k in range(2)]
    selected = tf.logical_and(maskable, draws[0] < mask_rate)
    random_ids = tf.random.stateless_uniform(
        shape,
        tf.random.experimental.stateless_fold_in(seed, 2),
        minval=first_random_id,
        maxval=vocabulary_size,
        dtype="int64",
    )
    replaced = tf.where(draws[1] < 0.8, tf.cast(mask_token_id, "int64"), tf.where(draws[1] < 0.9, random_ids, -1))
    masked = tf.where(tf.logical_and(selected, replaced >= 0), tf.cast(replaced, token_ids.dtype), token_ids)
    return masked, tf.cast(selected, "float32")
