"""Arrays to `tf.data` with the checks every entry point wants."""

import numpy as np
import tensorflow as tf

from keras_transfer.utils import validation


def make_dataset(x, y=None, batch_size=32, shuffle=False, seed=0, drop_remainder=False, repeat=False):
    """Batches arrays into a prefetched `tf.data.Dataset`, after checking them.

    Args:
        x: inputs, an array of N examples.
        y: labels of N examples, or None for an unlabelled dataset.
        batch_size: examples per batch, a positive int.
        shuffle: reshuffle the examples each epoch.
        seed: shuffling seed.
        drop_remainder: drop a last batch smaller than `batch_size`.
        repeat: repeat forever (use with `steps_per_epoch`).

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches, or of `x` batches when `y` is None.

    Raises:
        ValueError: for empty data, mismatched lengths, non-finite floats or a
            `batch_size` that is not a positive int.

    Example:

    >>> dataset = keras_transfer.datasets.make_dataset(
    ...     np.zeros((10, 3)), np.arange(10), batch_size=4)
    >>> [int(y.shape[0]) for _, y in dataset]
    [4, 4, 2]
    """
    validation.check_positive_int("batch_size", batch_size)
    validation.check_not_empty(x, "x")
    validation.check_finite(x, "x")
    if y is not None:
        if len(y) != len(x):
            raise ValueError(f"`x` and `y` must have the same length. Received: len(x)={len(x)}, len(y)={len(y)}")
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    else:
        ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def as_numpy_xy(data, name="data"):
    """Collects `(x, y)` arrays from a tuple of arrays or a finite batched `tf.data.Dataset` of (x, y).

    Args:
        data: `(x, y)` arrays or a finite batched `tf.data.Dataset` of `(x, y)`.
        name: the argument's name in error messages.

    Returns:
        `(x, y)` NumPy arrays.

    Raises:
        ValueError: for empty data, mismatched lengths or another structure.
    """
    if isinstance(data, tf.data.Dataset):
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    f"`{name}` must yield (x, y) batches. Received a dataset with element spec {data.element_spec}"
                )
            xs.append(np.asarray(batch[0]))
            ys.append(np.asarray(batch[1]))
        if not xs:
            raise ValueError(f"`{name}` must contain at least one example. Received: an empty dataset.")
        return np.concatenate(xs), np.concatenate(ys)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        validation.check_not_empty(x, name)
        if len(x) != len(y):
            raise ValueError(f"`{name}` must be (x, y) of equal lengths. Received: len(x)={len(x)}, len(y)={len(y)}")
        return x, y
    raise ValueError(
        f"`{name}` must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) batches. "
        f"Received: {type(data).__name__}"
    )
