"""Checks of `MetaModel`'s constructor arguments, and its learned rates' initializer."""

import keras
import numpy as np
from keras import ops

from keras_transfer.utils import validation


def check_model(model):
    """Raises unless `model` is a built `keras.Model` with trainable weights."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model. Received: model of type {type(model).__name__}")
    if not model.built:
        raise ValueError(
            "`model` must be built (give it an `Input` or call it on a batch first). "
            f"Received: model={model.name!r} with no weights yet"
        )
    if not model.trainable_variables:
        raise ValueError(
            "`model` must have trainable weights to adapt. Received: model="
            f"{model.name!r} with 0 trainable weights. Unfreeze it (model.trainable = True)."
        )


def check_steps(name, steps):
    """`steps` if it is a positive int (an inner step count)."""
    return validation.check_positive_int(name, steps, "Use at least one inner gradient step.")


def check_bool(name, value):
    """`value` if it is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def check_rate_bounds(bounds, learn_inner_rates):
    """`bounds` as a `(low, high)` pair of floats, or None; only with learned rates."""
    if bounds is None:
        return None
    ok = isinstance(bounds, (tuple, list)) and len(bounds) == 2
    try:
        low, high = (float(b) for b in bounds) if ok else (None, None)
    except (TypeError, ValueError):
        ok = False
    if not ok or not np.isfinite([low, high]).all() or not low < high:
        raise ValueError(
            "`inner_rate_bounds` must be None or a pair (low, high) of floats with low < high. "
            f"Received: inner_rate_bounds={bounds!r}. Use e.g. (0.0, 1.0)."
        )
    if learn_inner_rates is None:
        raise ValueError(
            "`inner_rate_bounds` only applies to learned inner rates. Received: "
            f"inner_rate_bounds={bounds!r} with learn_inner_rates=None. Set "
            'learn_inner_rates="per_parameter" or "per_step", or drop inner_rate_bounds.'
        )
    return (low, high)


def exact_constant(value):
    """Initializer filling `value` directly in the weight's dtype.

    `keras.initializers.Constant` rounds a Python float through float32 first
    (0.3 becomes 0.30000001192 in a float64 weight).
    """

    def initializer(shape, dtype=None):
        return ops.full(shape, value, dtype=dtype)

    return initializer
