"""Argument and data checks that raise Keras-style `ValueError`s.

Every message has the form "`name` must be .... Received: name=value" and, where
there is one, says what to do instead.
"""

import math
import numbers

import numpy as np


def _fail(name, requirement, value, fix=None):
    message = f"`{name}` must be {requirement}. Received: {name}={value!r}"
    if fix:
        message += f". {fix}"
    raise ValueError(message)


def check_positive_int(name, value, fix=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        _fail(name, "a positive integer", value, fix)
    return int(value)


def check_non_negative_int(name, value, fix=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        _fail(name, "a non-negative integer", value, fix)
    return int(value)


def check_int_at_least(name, value, minimum, fix=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        _fail(name, f"an integer >= {minimum}", value, fix)
    return int(value)


def check_positive_float(name, value, fix=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        _fail(name, "a positive finite number", value, fix)
    return float(value)


def check_finite_float(name, value, fix=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, "a finite number", value, fix)
    return float(value)


def is_non_negative_finite(value):
    """Whether `value` is a real number (not a bool), finite and >= 0."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0


def check_non_negative_float(name, value, fix=None):
    if not is_non_negative_finite(value):
        _fail(name, "a non-negative finite number", value, fix)
    return float(value)


def check_fraction(name, value, inclusive_low=True, inclusive_high=False, fix=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value >= 0 if inclusive_low else value > 0) and (value <= 1 if inclusive_high else value < 1)
    if not ok:
        low = "[0" if inclusive_low else "(0"
        high = "1]" if inclusive_high else "1)"
        _fail(name, f"a number in {low}, {high}", value, fix)
    return float(value)


def check_one_of(name, value, choices, fix=None):
    if value not in choices:
        _fail(
            name, f"one of {sorted(choices) if not isinstance(choices, (list, tuple)) else list(choices)}", value, fix
        )
    return value


def check_value_range(value_range, name="value_range"):
    """`(low, high)` as floats; raises unless a pair with low < high."""
    if not (
        isinstance(value_range, (tuple, list))
        and len(value_range) == 2
        and float(value_range[0]) < float(value_range[1])
    ):
        raise ValueError(
            f"`{name}` must be a pair (low, high) with low < high, e.g. (0, 255) or (0, 1). "
            f"Received: {name}={value_range!r}"
        )
    return (float(value_range[0]), float(value_range[1]))


def check_labels(y, num_classes, name="y"):
    """Checks integer class labels lie in [0, num_classes)."""
    y = np.asarray(y)
    if y.size == 0:
        raise ValueError(f"`{name}` must not be empty. Received: {name} with shape {y.shape}")
    if y.ndim == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"`{name}` must be a 1-D array of integer class ids (sparse labels). "
            f"Received: {name} with shape {y.shape}. "
            "Pass `np.argmax(one_hot, axis=-1)` if your labels are one-hot."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(
                f"`{name}` must hold integer class ids. Received: {name} with dtype "
                f"{y.dtype} and values such as {y.ravel()[:5].tolist()}"
            )
        y = y.astype("int64")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` must hold class ids in [0, {num_classes}) for num_classes={num_classes}. "
            f"Received: {name} with values in [{low}, {high}]. Re-index the labels or raise num_classes."
        )
    return y


def check_finite(x, name="x"):
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"`{name}` must contain only finite values. Received: {name} with {bad} "
            "NaN or infinite entries. Clean or impute the data first."
        )
    return x


def check_not_empty(x, name="x"):
    if len(x) == 0:
        raise ValueError(f"`{name}` must contain at least one example. Received: an empty {name}.")
    return x


def check_model_input(model, x, name="x"):
    """A ValueError when the array `x` cannot feed `model`'s single input: text where numbers go,
    another rank or fixed size, or fractional values where the input takes integer ids."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or not hasattr(x, "dtype"):
        return
    spec = inputs[0]
    integer = "int" in str(spec.dtype)
    if x.dtype.kind in "USO":
        fix = "Tokenize text first, e.g. with keras_transfer.layers.word_tokenizer" if integer else "Decode it first"
        raise ValueError(f"`{name}` must hold numbers. Received: an array of dtype {x.dtype}. {fix}.")
    expected = tuple(spec.shape[1:])
    got = tuple(x.shape[1:])
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        shown = ", ".join("any" if e is None else str(e) for e in expected)
        fix = f" Tokenize with sequence_length={expected[0]}." if integer and len(expected) == 1 else ""
        raise ValueError(
            f"`{name}` must have shape (n, {shown}) to feed the model's input. Received: shape {tuple(x.shape)}.{fix}"
        )
    if integer and x.dtype.kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x))):
        raise ValueError(
            f"`{name}` must hold integer ids (the model's input is {spec.dtype}). Received: non-integer or "
            "non-finite values. Cast whole-number ids with x.astype('int32')."
        )
