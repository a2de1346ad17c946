"""Mean Shannon entropy of predicted class distributions (TENT's test-time loss)."""

import keras
from keras import ops


def prediction_entropy(y_pred, from_logits=True, axis=-1):
    """Mean Shannon entropy (in nats) of the class distributions in `y_pred`.

    `H(p) = -sum_c p_c log p_c` for every row, averaged over the other axes (the
    batch). With logits, `p = softmax(y_pred)` and `log p = log_softmax(y_pred)`
    (stable for large logits); with probabilities, `p log p` is taken as 0 where
    `p = 0`. Computed in float32 for half-precision inputs. Keras has no entropy op
    (TensorFlow Probability's `Categorical.entropy` is not a dependency): written by hand.

    Args:
        y_pred: class scores `(..., num_classes)`: logits, or probabilities summing to 1.
        from_logits: whether `y_pred` holds logits (default) or probabilities.
        axis: the class axis.

    Returns:
        A scalar: the mean entropy, between 0 and `log(num_classes)`.

    Raises:
        ValueError: if `from_logits` is not a bool.

    Reference:
        Wang, Shelhamer, Liu, Olshausen & Darrell, "Tent: Fully Test-Time Adaptation
        by Entropy Minimization", ICLR 2021 (eq. 1).

    Example:

    >>> logits = np.array([[0.0, 0.0], [10.0, -10.0]], "float32")
    >>> round(float(keras_transfer.ops.prediction_entropy(logits)), 4)  # (log 2 + ~0) / 2
    0.3466
    >>> round(float(keras_transfer.ops.prediction_entropy([[0.5, 0.5]], from_logits=False)), 4)
    0.6931
    """
    if not isinstance(from_logits, bool):
        raise ValueError(
            f"`from_logits` must be True (logits) or False (probabilities). Received: from_logits={from_logits!r}"
        )
    y_pred = ops.convert_to_tensor(y_pred)
    if keras.backend.standardize_dtype(y_pred.dtype) != "float64":
        y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        log_p = ops.log_softmax(y_pred, axis=axis)
        p = ops.exp(log_p)
    else:
        p = y_pred
        # p log p -> 0 as p -> 0: the clipped log keeps 0 * log(0) from being NaN.
        log_p = ops.log(ops.maximum(p, 1e-300 if keras.backend.standardize_dtype(y_pred.dtype) == "float64" else 1e-30))
    return ops.mean(-ops.sum(p * log_p, axis=axis))
