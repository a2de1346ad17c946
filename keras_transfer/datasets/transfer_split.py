"""Source/target splits of a labelled dataset for transfer experiments."""

import dataclasses

import numpy as np

from keras_transfer.datasets import digits as digits_lib
from keras_transfer.utils import validation


@dataclasses.dataclass
class TransferSplit:
    """The parts of a transfer experiment, as returned by `split_source_target`.

    Labels of each side are re-indexed to 0..k-1 in the order of its class list.

    Attributes:
        source_train: `(x, y)` of the source classes, all labelled.
        source_test: `(x, y)` test examples of the source classes.
        target_train: `(x, y)`, `labels_per_class` labelled examples per target class.
        target_test: `(x, y)` test examples of the target classes.
        target_unlabeled: the target training inputs that were not given labels.
        source_classes: the original labels of the source classes.
        target_classes: the original labels of the target classes.

    Example:

    >>> split = keras_transfer.datasets.digits_source_target(image_size=8, labels_per_class=5)
    >>> split.target_train[0].shape, split.target_classes
    ((25, 8, 8, 1), (5, 6, 7, 8, 9))
    """

    source_train: tuple
    source_test: tuple
    target_train: tuple
    target_test: tuple
    target_unlabeled: np.ndarray
    source_classes: tuple
    target_classes: tuple


def _reindex(y, classes):
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[int(v)] for v in y], dtype="int64")


def split_source_target(
    train,
    test,
    source_classes,
    target_classes,
    labels_per_class=10,
    seed=0,
):
    """Splits `(x, y)` train and test arrays into a source task and a few-label target task.

    The source task keeps every example of `source_classes`; the target task
    gets `labels_per_class` labelled training examples per class of
    `target_classes` (drawn with `seed`), the rest of its training examples
    unlabelled, and all its test examples.

    Args:
        train: `(x, y)` training arrays.
        test: `(x, y)` test arrays.
        source_classes: at least 2 distinct labels of the source task.
        target_classes: at least 2 distinct labels of the target task.
        labels_per_class: labelled training examples per target class.
        seed: seed of the choice of labelled target examples.

    Returns:
        A `TransferSplit`; each side's labels are re-indexed 0..k-1.

    Raises:
        ValueError: if a class list has fewer than 2 distinct labels or labels
            absent from the data, or `labels_per_class` is not positive or
            larger than a class.

    Example:

    >>> x = np.arange(40, dtype="float32")[:, None]
    >>> y = np.arange(40) % 4
    >>> split = keras_transfer.datasets.split_source_target(
    ...     (x, y), (x, y), source_classes=(0, 1), target_classes=(2, 3), labels_per_class=2)
    >>> split.source_train[0].shape, split.target_train[0].shape, split.target_unlabeled.shape
    ((20, 1), (4, 1), (16, 1))
    >>> sorted(split.target_train[1].tolist())
    [0, 0, 1, 1]
    """
    source_classes = tuple(int(c) for c in source_classes)
    target_classes = tuple(int(c) for c in target_classes)
    for name, classes in (("source_classes", source_classes), ("target_classes", target_classes)):
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"`{name}` must list at least 2 distinct classes. Received: {name}={classes}")
    x_train, y_train = train
    x_test, y_test = test
    available = set(np.unique(y_train).tolist())
    missing = [c for c in source_classes + target_classes if c not in available]
    if missing:
        raise ValueError(
            f"`source_classes` and `target_classes` must be labels present in the data "
            f"({sorted(available)}). Received classes {missing} that are absent."
        )
    validation.check_positive_int(
        "labels_per_class", labels_per_class, "Use at least one labelled example per target class."
    )
    rng = np.random.default_rng(seed)
    src_train = np.isin(y_train, source_classes)
    src_test = np.isin(y_test, source_classes)
    chosen, unlabeled = [], []
    for c in target_classes:
        idx = np.flatnonzero(y_train == c)
        if labels_per_class > len(idx):
            raise ValueError(
                f"`labels_per_class` must be at most {len(idx)} (the training examples of class {c}). "
                f"Received: labels_per_class={labels_per_class}"
            )
        idx = rng.permutation(idx)
        chosen.append(idx[:labels_per_class])
        unlabeled.append(idx[labels_per_class:])
    chosen = np.sort(np.concatenate(chosen))
    unlabeled = np.sort(np.concatenate(unlabeled))
    tgt_test = np.isin(y_test, target_classes)
    return TransferSplit(
        source_train=(x_train[src_train], _reindex(y_train[src_train], source_classes)),
        source_test=(x_test[src_test], _reindex(y_test[src_test], source_classes)),
        target_train=(x_train[chosen], _reindex(y_train[chosen], target_classes)),
        target_test=(x_test[tgt_test], _reindex(y_test[tgt_test], target_classes)),
        target_unlabeled=x_train[unlabeled],
        source_classes=source_classes,
        target_classes=target_classes,
    )


def digits_source_target(
    image_size=32,
    channels=1,
    source_classes=(0, 1, 2, 3, 4),
    target_classes=(5, 6, 7, 8, 9),
    labels_per_class=10,
    test_fraction=0.25,
    seed=0,
):
    """scikit-learn's digits split into a source task and a few-label target task.

    `load_digits` followed by `split_source_target`: by default the source task
    is the digits 0-4 with all labels, the target task the digits 5-9 with 10
    labels per class.

    Args:
        image_size: int or (height, width) of the images.
        channels: 1 (grayscale) or 3 (RGB).
        source_classes: digits of the source task.
        target_classes: digits of the target task.
        labels_per_class: labelled training examples per target class.
        test_fraction: share of each class held out for testing.
        seed: seed of the split and of the labelled examples.

    Returns:
        A `TransferSplit`; its labels are re-indexed 0..k-1 on each side.

    Raises:
        ValueError: as `load_digits` and `split_source_target`.

    Example:

    >>> split = keras_transfer.datasets.digits_source_target(image_size=8, labels_per_class=5)
    >>> split.source_train[0].shape[1:], split.target_train[0].shape
    ((8, 8, 1), (25, 8, 8, 1))
    >>> sorted(set(split.target_train[1].tolist()))
    [0, 1, 2, 3, 4]
    """
    train, test = digits_lib.load_digits(image_size, channels, test_fraction, seed)
    return split_source_target(train, test, source_classes, target_classes, labels_per_class, seed)
