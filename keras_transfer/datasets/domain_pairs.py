"""Zips a labelled source and an unlabelled target set of different sizes into DA batches."""

import math

import numpy as np
import tensorflow as tf

from keras_transfer.utils import validation


def _length(x, name):
    leaves = tf.nest.flatten(x)
    if not leaves:
        raise ValueError(f"`{name}` must be an array or a dict of arrays. Received: {name}={x!r}")
    lengths = {len(v) for v in leaves}
    if len(lengths) != 1:
        raise ValueError(f"`{name}` must hold arrays of one length. Received: {name} with lengths {sorted(lengths)}")
    return lengths.pop()


def _feature_shapes(x):
    return [tuple(np.shape(v)[1:]) for v in tf.nest.flatten(x)]


def _side(data, batch_size, shuffle, seed):
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        ds = ds.shuffle(_length(data, "data"), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat().batch(batch_size, drop_remainder=True)


def domain_pairs(
    source_x,
    source_y,
    target_x,
    batch_size=32,
    target_batch_size=None,
    source_sample_weight=None,
    num_classes=None,
    shuffle=True,
    seed=0,
):
    """A `tf.data.Dataset` of `((source_x, target_x), source_y)` batches for `DANN` & co.

    One epoch is `max(ceil(n_source / batch_size), ceil(n_target / target_batch_size))`
    batches: the shorter side is repeated (reshuffled on every pass), so every batch
    has exactly `batch_size` source and `target_batch_size` target examples and every
    example of the longer side is seen once per epoch. The dataset has a known
    length, so `fit` (and `GradientReversalSchedule`) know the number of steps.

    Args:
        source_x: source inputs, an array (or dict of arrays) of `n_source` rows.
        source_y: source labels, `n_source` rows.
        target_x: unlabelled target inputs with the same feature shape as `source_x`.
        batch_size: source examples per batch.
        target_batch_size: target examples per batch (default: `batch_size`).
        source_sample_weight: optional per-example weights of the source; the
            batches become `((source_x, target_x), source_y, source_sample_weight)`.
        num_classes: when given, `source_y` is checked to hold ids in `[0, num_classes)`.
        shuffle: shuffle both sides (each epoch).
        seed: shuffling seed.

    Returns:
        A finite, prefetched `tf.data.Dataset`.

    Raises:
        ValueError: if a batch size is not positive, a side is empty, the
            lengths or feature shapes disagree, an input is not finite, a label
            is outside `[0, num_classes)`, or `target_x` looks like an
            `(inputs, labels)` pair.

    Reference:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016.

    Example:

    >>> source_x = np.zeros((10, 2), "float32")
    >>> source_y = np.zeros((10,), "int64")
    >>> target_x = np.ones((25, 2), "float32")
    >>> dataset = keras_transfer.datasets.domain_pairs(
    ...     source_x, source_y, target_x, batch_size=5)
    >>> len(dataset)  # max(ceil(10 / 5), ceil(25 / 5))
    5
    >>> (xs, xt), ys = next(iter(dataset))
    >>> tuple(xs.shape), tuple(xt.shape), tuple(ys.shape)
    ((5, 2), (5, 2), (5,))
    """
    batch_size = validation.check_positive_int("batch_size", batch_size)
    target_batch_size = (
        batch_size
        if target_batch_size is None
        else validation.check_positive_int("target_batch_size", target_batch_size)
    )
    if isinstance(target_x, (tuple, list)):
        raise ValueError(
            "`target_x` must hold the target inputs only: the target domain is unlabelled. "
            f"Received: target_x as a {type(target_x).__name__} of {len(target_x)} parts "
            "(inputs and labels?). Pass the target inputs alone; evaluate on labelled target "
            "data with `model.evaluate(target_x, target_y)`."
        )
    n_source = _length(source_x, "source_x")
    n_target = _length(target_x, "target_x")
    if n_source == 0:
        validation.check_not_empty([], "source_x")
    if n_target == 0:
        raise ValueError(
            "`target_x` must contain at least one example: domain adaptation needs unlabelled "
            "target inputs. Received: an empty target_x. Train a `SourceOnly` model when there "
            "is no target data."
        )
    if _length(source_y, "source_y") != n_source:
        raise ValueError(
            "`source_x` and `source_y` must have the same length. Received: "
            f"len(source_x)={n_source}, len(source_y)={len(source_y)}"
        )
    if _feature_shapes(source_x) != _feature_shapes(target_x):
        raise ValueError(
            "`source_x` and `target_x` must have the same feature shape. Received: "
            f"source_x with feature shape {_feature_shapes(source_x)} and target_x with "
            f"{_feature_shapes(target_x)}. Resize or map the target inputs to the source input "
            "space first."
        )
    for name, value in (("source_x", source_x), ("target_x", target_x)):
        for leaf in tf.nest.flatten(value):
            validation.check_finite(leaf, name)
    if num_classes is not None:
        validation.check_labels(source_y, validation.check_int_at_least("num_classes", num_classes, 2), "source_y")
    source = (source_x, source_y)
    if source_sample_weight is not None:
        if len(source_sample_weight) != n_source:
            raise ValueError(
                "`source_sample_weight` must have one weight per source example. Received: "
                f"{len(source_sample_weight)} weights for {n_source} examples"
            )
        source = (source_x, source_y, np.asarray(source_sample_weight, "float32"))
    steps = max(math.ceil(n_source / batch_size), math.ceil(n_target / target_batch_size))
    source_ds = _side(source, batch_size, shuffle, seed)
    target_ds = _side(target_x, target_batch_size, shuffle, seed + 1)

    def arrange(source_batch, target_batch):
        if len(source_batch) == 3:
            xs, ys, weights = source_batch
            return (xs, target_batch), ys, weights
        xs, ys = source_batch
        return (xs, target_batch), ys

    ds = tf.data.Dataset.zip((source_ds, target_ds)).map(arrange).take(steps)
    return ds.prefetch(tf.data.AUTOTUNE)
