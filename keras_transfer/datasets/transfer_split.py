"""Source/target splits of a labelled dataset for transfer experiments."""

import dataclasses

import numpy as np

from keras_transfer.datasets import digits as digits_lib
from keras_transfer.utils import validation


@dataclasses.dataclass
class TransferSplit:
    """The four (x, y) parts of a transfer experiment.

    Labels of each side are re-indexed to 0..k-1 in the order of its class list.
    `target_unlabeled` holds the target training images that were not given labels.
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
    """Splits `(x, y)` train and test arrays into a source task and a few-label target task."""
    source_classes = tuple(int(c) for c in source_classes)
    target_classes = tuple(int(c) for c in target_classes)
    for name, classes in (("source_classes", source_classes), ("target_classes", target_classes)):
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(
                f"`{name}` must list at least 2 distinct classes. Received: {name}={classes}"
            )
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
    """Digits split into a source task (e.g. 0-4, all labels) and a target task (5-9, few labels).

    Returns a `TransferSplit`; its target labels are re-indexed 0..k-1.
    """
    train, test = digits_lib.load_digits(image_size, channels, test_fraction, seed)
    return split_source_target(train, test, source_classes, target_classes, labels_per_class, seed)
