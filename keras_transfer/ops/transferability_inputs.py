"""Input checks shared by the transferability scores (LogME, LEEP, NCE, H-score).

Each check raises a Keras-style `ValueError` ("`name` must be .... Received: name=...")
that says what to do instead, and returns the input as a float64 or int64 NumPy array.
"""

import numpy as np

# Rows of source-class probabilities must sum to 1 within this (float32 softmax outputs
# sum to 1 within ~1e-6; logits or unnormalised scores are far off).
PROBABILITY_SUM_TOLERANCE = 1e-3


def _describe(array):
    return f"an array of shape {array.shape} and dtype {array.dtype}"


def check_matrix(values, name, what):
    """`values` as a finite float64 `(num_examples, num_columns)` array.

    Args:
        values: array-like.
        name: the argument's name in messages.
        what: what a column is ("features", "source classes"), for messages.

    Returns:
        A float64 array of rank 2.

    Raises:
        ValueError: if `values` is not numeric, not of rank 2, empty, or holds NaN or inf.
    """
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must be a numeric array. Received: {name}={_describe(array)}")
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array (num_examples, num_{what.replace(' ', '_')}). "
            f"Received: {name}={_describe(array)}. Flatten or pool each example to one vector first "
            f"(e.g. `{name}.reshape(len({name}), -1)`)."
        )
    if array.size == 0:
        raise ValueError(
            f"`{name}` must hold at least one example and one of its {what}. Received: {name}={_describe(array)}"
        )
    array = array.astype("float64")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise ValueError(
            f"`{name}` must contain only finite values. Received: {name}={_describe(array)} with {bad} NaN or "
            "infinite entries. Check the model (a diverged network gives NaN) or clean the inputs."
        )
    return array


def check_integer_ids(values, name):
    """`values` as a non-empty 1-D int64 array of non-negative integer ids."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array of integer class ids. Received: {name}={_describe(array)}. "
            f"Pass `np.argmax({name}, axis=-1)` if the labels are one-hot."
        )
    if array.size == 0:
        raise ValueError(f"`{name}` must hold at least one example. Received: {name}={_describe(array)}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`{name}` must hold integer class ids. Received: {name}={_describe(array)}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(np.mod(array, 1) == 0):
            raise ValueError(
                f"`{name}` must hold integer class ids. Received: {name} with dtype {array.dtype} and values "
                f"such as {array[:5].tolist()}"
            )
    array = array.astype("int64")
    if array.min() < 0:
        raise ValueError(
            f"`{name}` must hold non-negative class ids. Received: {name} with minimum {int(array.min())}. "
            f"Re-index the labels, e.g. `np.unique({name}, return_inverse=True)[1]`."
        )
    return array


def check_target_labels(labels, num_examples=None, name="labels", other="features"):
    """Target labels: ids `0..K-1`, every class present, K >= 2, one per example.

    Args:
        labels: array-like of integer class ids.
        num_examples: the number of rows of the matching `other` array, or None.
        name: the argument's name in messages.
        other: the name of the matching array, for messages.

    Returns:
        `(labels, num_classes)`: an int64 array and K = max(labels) + 1.

    Raises:
        ValueError: if the labels are not 1-D non-negative integers, their length is not
            `num_examples`, there is only one class, fewer examples than classes, or a
            class id in `[0, K)` has no example.
    """
    labels = check_integer_ids(labels, name)
    if num_examples is not None and len(labels) != num_examples:
        raise ValueError(
            f"`{name}` must have one entry per row of `{other}`. Received: {name} of length {len(labels)} "
            f"for {num_examples} rows of {other}. Pass the labels of the same examples, in the same order."
        )
    num_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes)
    if np.count_nonzero(counts) < 2:
        raise ValueError(
            f"`{name}` must hold at least 2 classes (a score ranks how well the features separate classes). "
            f"Received: {name} with the single class {int(labels[0])}"
        )
    if len(labels) < num_classes:
        raise ValueError(
            f"`{name}` must have at least as many examples as classes (class ids run over [0, max({name})]). "
            f"Received: {len(labels)} examples for {num_classes} classes (max({name})={num_classes - 1}). "
            f"Label more examples, or re-index the labels with `np.unique({name}, return_inverse=True)[1]`."
        )
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"`{name}` must contain every class id in [0, {num_classes - 1}]. Received: {name} with no example "
            f"of classes {missing[:10].tolist()}. Re-index the labels with "
            f"`np.unique({name}, return_inverse=True)[1]`."
        )
    return labels, num_classes


def check_probabilities(probabilities, name="source_probabilities"):
    """Rows of class probabilities: finite, in [0, 1], each row summing to 1.

    Args:
        probabilities: array-like `(num_examples, num_source_classes)`.
        name: the argument's name in messages.

    Returns:
        A float64 array.

    Raises:
        ValueError: if it is not a finite non-empty 2-D array, has entries outside
            [0, 1], or a row whose sum differs from 1 by more than
            `PROBABILITY_SUM_TOLERANCE`.
    """
    probabilities = check_matrix(probabilities, name, "source classes")
    low, high = probabilities.min(), probabilities.max()
    if low < 0 or high > 1 + PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1]. Received: {name} with values in [{low:.4g}, {high:.4g}]. "
            "Apply a softmax to logits first (`keras.ops.softmax(logits)`)."
        )
    sums = probabilities.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            f"`{name}` must have rows that sum to 1 (a distribution over the source classes). Received: {name} "
            f"whose row {worst} sums to {sums[worst]:.6g}. Apply a softmax to logits, or divide each row by its sum."
        )
    return probabilities
