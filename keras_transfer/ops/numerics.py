"""Dtype and shape helpers shared by the losses, layers and models.

Contrastive losses and cosine-similarity heads compute in float32 whatever the
dtype policy (float16 logits overflow), and in float64 when given float64 (so
that tests can compare against exact NumPy references). These helpers hold that
rule in one place. They are internal plumbing rather than transfer-learning
maths, so `keras_transfer.ops` does not export them; import them from
`keras_transfer.ops.numerics`.
"""

import numbers

import keras
from keras import ops


def compute_dtype(x):
    """The dtype a loss computes `x` in: float64 for float64 inputs, float32 otherwise.

    Args:
        x: a tensor (or anything with a `dtype`).

    Returns:
        `"float64"` or `"float32"`; half-precision inputs are computed in float32.

    Example:

    >>> keras_transfer.ops.numerics.compute_dtype(np.zeros(2, "float16"))
    'float32'
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "float64" if dtype == "float64" else "float32"


def l2_normalize(x, epsilon=1e-12):
    """`x / max(||x||, sqrt(epsilon))` along the last axis, in the dtype of `x`.

    Args:
        x: a float tensor.
        epsilon: lower bound on the squared norm (keeps zero rows finite).

    Returns:
        A tensor of the shape and dtype of `x` whose rows have unit norm.

    Example:

    >>> y = keras_transfer.ops.numerics.l2_normalize(np.array([[3.0, 4.0]], "float32"))
    >>> np.round(keras.ops.convert_to_numpy(y), 2)
    array([[0.6, 0.8]], dtype=float32)
    """
    squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, epsilon))


def cast_scalar(value, dtype):
    """`value` as a tensor of `dtype`; a Python number is converted directly, not via float32.

    `ops.cast(1 / 0.07, "float64")` goes through float32 first (14.285714149...
    instead of 14.285714285...); a Python number is converted straight to `dtype`.

    Args:
        value: a Python number, or a tensor / variable (cast).
        dtype: the target dtype.

    Returns:
        A tensor of `dtype`.

    Example:

    >>> float(keras_transfer.ops.numerics.cast_scalar(1 / 0.07, "float64"))
    14.285714285714285
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return ops.convert_to_tensor(float(value), dtype=dtype)
    return ops.cast(value, dtype)


def static_batch_size(x):
    """The static size of the first axis of `x`, or None when unknown (or `x` has no axis).

    Args:
        x: a tensor, array or symbolic tensor.

    Returns:
        An int, or None.

    Example:

    >>> keras_transfer.ops.numerics.static_batch_size(np.zeros((3, 2)))
    3
    >>> print(keras_transfer.ops.numerics.static_batch_size(keras.KerasTensor((None, 2))))
    None
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 1:
        return None
    return None if shape[0] is None else int(shape[0])
