"""Merging task vectors (per-weight deltas): weighted linear merge, task arithmetic and TIES.

A task vector is what fine-tuning (or an adapter, once folded) adds to one pretrained
weight: `tau = theta_task - theta_base`. For a LoRA layer that is the product
`(alpha / r) A B`, never the factors themselves (`A`, `B` of two tasks live in unrelated
bases: averaging them is meaningless). Each function here takes the deltas of ONE weight,
one per task, all of the same shape, and returns the merged delta; the recipe
`keras_transfer.recipes.merge_adapters` applies them weight by weight and adds the result
to the base. Everything runs in `keras.ops`, in the deltas' own dtype (float64 stays
float64).
"""

import math

import keras
import numpy as np

from keras_transfer.utils import validation


def _stack(deltas, name="deltas"):
    if not isinstance(deltas, (list, tuple)) or not deltas:
        raise ValueError(
            f"`{name}` must be a non-empty list of arrays (one delta per task, same shape). Received: {name}={deltas!r}"
        )
    tensors = [keras.ops.convert_to_tensor(d) for d in deltas]
    shapes = [tuple(t.shape) for t in tensors]
    if len(set(shapes)) != 1:
        raise ValueError(
            f"`{name}` must all have one shape (the deltas of one weight). Received: shapes {shapes}. "
            "Pass the deltas of the same weight from each task."
        )
    dtype = keras.backend.result_type(*[t.dtype for t in tensors])
    if not dtype.startswith("float"):
        dtype = keras.config.floatx()
    return keras.ops.stack([keras.ops.cast(t, dtype) for t in tensors]), dtype


def _weights(weights, count, dtype, default):
    if weights is None:
        return keras.ops.full((count,), default, dtype=dtype)
    values = np.asarray(weights, dtype="float64") if _is_numeric_list(weights) else None
    if values is None or values.ndim != 1 or len(values) != count:
        raise ValueError(
            f"`weights` must hold one number per task ({count}). Received: weights={weights!r}. "
            "Give one weight per delta, or None."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`weights` must be finite numbers. Received: weights={weights!r}")
    return keras.ops.convert_to_tensor(values.astype(dtype))


def _is_numeric_list(values):
    try:
        np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        return False
    return True


def _weighted_sum(stacked, weights):
    shape = (-1,) + (1,) * (len(stacked.shape) - 1)
    return keras.ops.sum(stacked * keras.ops.reshape(weights, shape), axis=0)


def linear_merge(deltas, weights=None):
    """Weighted linear merge of task vectors: `sum_t w_t tau_t` (default `w_t = 1 / T`, the mean).

    Args:
        deltas: a list of `T` arrays of one shape: the deltas of one weight, one per task.
        weights: `T` numbers, or None for the average (`1 / T` each).

    Returns:
        The merged delta, a tensor of the deltas' shape.

    Raises:
        ValueError: if `deltas` is empty or its shapes differ, or `weights` has the wrong length.

    Reference:
        Wortsman et al., "Model soups", ICML 2022 (uniform averaging); PEFT's
        `add_weighted_adapter(combination_type="linear")` on LoRA deltas.

    Example:
    >>> merged = keras_transfer.ops.linear_merge([np.array([1.0, 2.0]), np.array([3.0, -2.0])])
    >>> keras.ops.convert_to_numpy(merged).tolist()
    [2.0, 0.0]
    """
    stacked, dtype = _stack(deltas)
    return _weighted_sum(stacked, _weights(weights, stacked.shape[0], dtype, 1.0 / stacked.shape[0]))


def task_arithmetic(deltas, scale=1.0, weights=None):
    """Task arithmetic: `lambda * sum_t w_t tau_t` (added to the base weight by the caller).

    A linear merge with weights `w_t / T` is task arithmetic with `lambda = 1 / T`; Ilharco et al.
    sum the task vectors and pick `lambda` (`scale`) on held-out data.

    Args:
        deltas: a list of `T` arrays of one shape: the deltas of one weight, one per task.
        scale: `lambda`, a finite number.
        weights: `T` per-task numbers, or None (1 each).

    Returns:
        The merged delta, a tensor of the deltas' shape.

    Raises:
        ValueError: if `deltas` is empty or its shapes differ, `scale` is not finite, or `weights`
            has the wrong length.

    Reference:
        Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023.

    Example:
    >>> merged = keras_transfer.ops.task_arithmetic([np.array([1.0, 2.0]), np.array([3.0, -2.0])], scale=0.5)
    >>> keras.ops.convert_to_numpy(merged).tolist()
    [2.0, 0.0]
    """
    scale = validation.check_finite_float("scale", scale)
    stacked, dtype = _stack(deltas)
    return scale * _weighted_sum(stacked, _weights(weights, stacked.shape[0], dtype, 1.0))


def trim_to_density(delta, density):
    """TIES step 1: keeps the `ceil(density * size)` entries of largest magnitude, zeroes the rest.

    Args:
        delta: one task's delta of one weight (any shape).
        density: the fraction kept, in (0, 1].

    Returns:
        A tensor of `delta`'s shape (ties at the threshold keep the lower flat index).

    Raises:
        ValueError: if `density` is outside (0, 1].

    Example:
    >>> trimmed = keras_transfer.ops.trim_to_density(np.array([0.1, -3.0, 2.0, 0.5]), density=0.5)
    >>> keras.ops.convert_to_numpy(trimmed).tolist()
    [0.0, -3.0, 2.0, 0.0]
    """
    density = _check_density(density)
    delta = keras.ops.convert_to_tensor(delta)
    flat = keras.ops.reshape(delta, (-1,))
    size = int(flat.shape[0])
    keep = min(size, math.ceil(density * size))
    if keep >= size:
        return delta
    _, indices = keras.ops.top_k(keras.ops.abs(flat), k=keep, sorted=False)
    mask = keras.ops.scatter(keras.ops.expand_dims(indices, -1), keras.ops.ones((keep,), flat.dtype), (size,))
    return keras.ops.reshape(flat * mask, delta.shape)


def elect_sign(deltas):
    """TIES step 2: the sign of the summed (trimmed) deltas, entry by entry.

    The sign with the larger total magnitude across tasks wins: `sign(sum_t tau_t)`.

    Args:
        deltas: a list of arrays of one shape (trimmed task vectors of one weight).

    Returns:
        A tensor of +1, -1 (and 0 where the sum is exactly 0).

    Raises:
        ValueError: if `deltas` is empty or its shapes differ.

    Example:
    >>> sign = keras_transfer.ops.elect_sign([np.array([1.0, -1.0]), np.array([-3.0, 0.5])])
    >>> keras.ops.convert_to_numpy(sign).tolist()
    [-1.0, -1.0]
    """
    stacked, _ = _stack(deltas)
    return keras.ops.sign(keras.ops.sum(stacked, axis=0))


def disjoint_mean(deltas, sign):
    """TIES step 3: per entry, the mean of the deltas whose sign agrees with `sign` (zeros excluded).

    An entry where no task agrees (or every delta is zero) gets 0.

    Args:
        deltas: a list of arrays of one shape (trimmed task vectors of one weight).
        sign: the elected sign, an array of that shape.

    Returns:
        A tensor of the deltas' shape.

    Raises:
        ValueError: if `deltas` is empty or its shapes differ.

    Example:
    >>> deltas = [np.array([1.0, -1.0]), np.array([-3.0, 0.5])]
    >>> merged = keras_transfer.ops.disjoint_mean(deltas, np.array([-1.0, -1.0]))
    >>> keras.ops.convert_to_numpy(merged).tolist()
    [-3.0, -1.0]
    """
    stacked, dtype = _stack(deltas)
    agree = keras.ops.cast(keras.ops.sign(stacked) * keras.ops.cast(sign, dtype) > 0, dtype)
    count = keras.ops.sum(agree, axis=0)
    return keras.ops.sum(stacked * agree, axis=0) / keras.ops.maximum(count, 1.0)


def ties_merge(deltas, density=0.2, scale=1.0, weights=None):
    """TIES-merging: trim each task vector to its top-`density` magnitudes, elect signs, disjoint mean.

    `lambda * disjoint_mean(w_t trim(tau_t), sign(sum_t w_t trim(tau_t)))`. The trim keeps the
    top entries of each weight tensor (as PEFT does per module; the paper ranks over the whole
    task vector); `weights` scale the trimmed vectors before the sign election (as PEFT's
    `add_weighted_adapter(combination_type="ties")`).

    Args:
        deltas: a list of `T` arrays of one shape: the deltas of one weight, one per task.
        density: the fraction `k` of entries each task keeps, in (0, 1] (the paper's default 0.2).
        scale: `lambda`, a finite number (the paper's default 1).
        weights: `T` per-task numbers, or None (1 each).

    Returns:
        The merged delta, a tensor of the deltas' shape.

    Raises:
        ValueError: if `deltas` is empty or its shapes differ, `density` is outside (0, 1],
            `scale` is not finite or `weights` has the wrong length.

    Reference:
        Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023.

    Example:
    >>> a, b = np.array([2.0, -1.0, 0.1, 4.0]), np.array([-3.0, 1.0, 0.2, 2.0])
    >>> merged = keras_transfer.ops.ties_merge([a, b], density=0.5)
    >>> keras.ops.convert_to_numpy(merged).tolist()
    [-3.0, 0.0, 0.0, 3.0]
    """
    density = _check_density(density)
    scale = validation.check_finite_float("scale", scale)
    stacked, dtype = _stack(deltas)
    w = _weights(weights, stacked.shape[0], dtype, 1.0)
    trimmed = [trim_to_density(stacked[t], density) * w[t] for t in range(stacked.shape[0])]
    return scale * disjoint_mean(trimmed, elect_sign(trimmed))


def _check_density(density):
    return validation.check_fraction(
        "density", density, inclusive_low=False, inclusive_high=True, fix="It is the fraction of entries kept"
    )
