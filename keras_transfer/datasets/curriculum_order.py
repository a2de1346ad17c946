"""Difficulty scores to a curriculum order (easiest first), fixed or updated while training."""

import numpy as np
import tensorflow as tf


def difficulty_order(difficulty, num_examples=None, labels=None):
    """The indices of the examples from easiest to hardest: a stable sort of `difficulty`.

    A lower score is easier (a loss, say; pass `-confidence` for a confidence). Ties
    keep the order of the examples, so equal scores give the identity order.

    With `labels`, the order is class-balanced: each example is placed by its quantile
    within its own class (the easiest 10 % of every class come before the next 10 % of
    any class; ties by score, then index), so every prefix holds each class in
    proportion to its size. A plain sort can leave whole classes out of the first
    prefixes when one class is easier than the others, and a curriculum then trains
    early on a subset of the classes.

    Args:
        difficulty: one finite score per example (a 1-D array-like).
        num_examples: None, or the number of examples `difficulty` must cover.
        labels: None, or one class label per example for a class-balanced order.

    Returns:
        An int64 array: `order[0]` is the easiest example.

    Raises:
        ValueError: if `difficulty` is empty, not 1-D, of the wrong length, or holds
            NaN or infinite scores, or `labels` are not one per example.

    Reference:
        Hacohen & Weinshall, "On the Power of Curriculum Learning in Training Deep
        Networks", ICML 2019 (§2, scoring functions).

    Example:

    >>> keras_transfer.datasets.difficulty_order([0.5, 0.1, 0.9, 0.1])
    array([1, 3, 0, 2])
    >>> keras_transfer.datasets.difficulty_order([0.1, 0.2, 0.3, 0.9], labels=[0, 0, 1, 1])
    array([0, 2, 1, 3])
    """
    scores = check_difficulty(difficulty, num_examples)
    order = np.argsort(scores, kind="stable")
    if labels is None:
        return order.astype("int64")
    labels = _check_labels(labels, len(scores))
    quantile = np.empty(len(scores), dtype="float64")
    for label in np.unique(labels):
        members = order[labels[order] == label]  # this class, easiest first
        quantile[members] = np.arange(1, len(members) + 1) / len(members)
    return np.lexsort((np.arange(len(scores)), scores, quantile)).astype("int64")


def _check_labels(labels, num_examples):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != num_examples:
        raise ValueError(
            f"`labels` must hold one class label per example ({num_examples}). Received: labels with shape "
            f"{labels.shape}. Pass integer class ids (argmax of one-hot labels)."
        )
    return labels


def check_difficulty(difficulty, num_examples=None, name="difficulty"):
    """`difficulty` as a float64 array after the checks of `difficulty_order`."""
    try:
        scores = np.asarray(difficulty, dtype="float64")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be one number per example. Received: {name} of type {type(difficulty).__name__}"
        ) from error
    if scores.ndim == 2 and scores.shape[-1] == 1:
        scores = scores[:, 0]
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D array with one score per example. Received: {name} with "
            f"shape {scores.shape}"
        )
    if num_examples is not None and len(scores) != num_examples:
        raise ValueError(
            f"`{name}` must have one score per example ({num_examples}). Received: {name} with "
            f"{len(scores)} scores. Score every training example, in the order of `x`."
        )
    bad = int(np.size(scores) - np.count_nonzero(np.isfinite(scores)))
    if bad:
        first = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"`{name}` must hold finite scores. Received: {name} with {bad} NaN or infinite scores "
            f"(the first at index {first}). Score those examples, or drop them from the data."
        )
    return scores


class CurriculumOrder:
    """A curriculum order held in a `tf.Variable`, so that it can change while a dataset reads it.

    `keras_transfer.datasets.curriculum_dataset` reads the order of its examples from
    this object at every step; `update` re-sorts it (self-paced learning re-scores the
    examples with the model's own loss, see
    `keras_transfer.callbacks.SelfPacedCurriculum`). A fixed curriculum needs no such
    object: pass the difficulty array itself.

    Args:
        difficulty: one finite score per example, lower is easier.
        labels: None, or one class label per example: every order (the first and each
            update) is then class-balanced (see `difficulty_order`).

    Attributes:
        order: an int64 `tf.Variable` of the example indices, easiest first.
        difficulty: the float64 scores of the last update (a NumPy array).
        labels: the class labels of a class-balanced order, or None.
        num_examples: the number of examples.
        updates: how many times `update` was called.

    Raises:
        ValueError: as `difficulty_order` for empty, non-finite or non-1-D scores, or
            labels that are not one per example.

    Reference:
        Kumar, Packer & Koller, "Self-Paced Learning for Latent Variable Models",
        NeurIPS 2010.

    Example:

    >>> order = keras_transfer.datasets.CurriculumOrder([0.3, 0.1, 0.2])
    >>> order.order.numpy()
    array([1, 2, 0])
    >>> order.update([0.1, 0.3, 0.2])
    >>> order.order.numpy(), order.updates
    (array([0, 2, 1]), 1)
    """

    def __init__(self, difficulty, labels=None):
        self.difficulty = check_difficulty(difficulty)
        self.num_examples = len(self.difficulty)
        self.labels = None if labels is None else _check_labels(labels, self.num_examples)
        order = difficulty_order(self.difficulty, labels=self.labels)
        self.order = tf.Variable(order, trainable=False, name="curriculum_order")
        self.updates = 0

    def update(self, difficulty):
        """Re-sorts the examples by new scores (same number of examples).

        Args:
            difficulty: one finite score per example, lower is easier.

        Raises:
            ValueError: if the scores are not finite or not one per example.
        """
        scores = check_difficulty(difficulty, self.num_examples)
        self.order.assign(difficulty_order(scores, labels=self.labels))
        self.difficulty = scores
        self.updates += 1
