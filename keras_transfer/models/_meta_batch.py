"""The meta-batch format read by `MetaModel`, `ProtoNet` and `BlackBoxLearner`.

A meta-batch is `x = {"support_x": [T, K, ...], "support_y": [T, K, ...],
"query_x": [T, Q, ...]}` (or the tuple `(support_x, support_y, query_x)`) with `y`
the query targets `[T, Q, ...]`: the batch axis is the task axis. These helpers
unpack, check and reshape it; the error messages speak of the model's `x` and `y`.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_transfer.models._task_signature import TASK_KEYS
from keras_transfer.utils import validation


def is_meta_batch(inputs):
    """True for a dict or a 3-tuple/list (a meta-batch), False for a plain tensor."""
    return isinstance(inputs, dict) or (isinstance(inputs, (tuple, list)) and len(inputs) == 3)


def unpack_tasks(x):
    """`(support_x, support_y, query_x)` from a dict with those keys or a 3-tuple/list."""
    if isinstance(x, dict):
        missing = [k for k in TASK_KEYS if k not in x]
        if missing:
            raise ValueError(
                "`x` must be a dict with keys "
                f"{list(TASK_KEYS)} (a meta-batch of tasks). Received: x with keys {sorted(x)}"
            )
        return x["support_x"], x["support_y"], x["query_x"]
    if isinstance(x, (tuple, list)) and len(x) == 3:
        return tuple(x)
    raise ValueError(
        "`x` must be a meta-batch of tasks: a dict {'support_x', 'support_y', 'query_x'} or a "
        "tuple (support_x, support_y, query_x) with shapes [tasks, shots, ...], and `y` the "
        f"query targets [tasks, queries, ...]. Received: x of type {type(x).__name__}"
    )


def check_task_shapes(support_x, support_y, query_x, query_y=None):
    """Raises `ValueError` unless the shapes form a meta-batch (static axes are compared).

    Args:
        support_x: `[T, K, *features]` support inputs.
        support_y: `[T, K, ...]` support targets (add a trailing axis to class ids).
        query_x: `[T, Q, *features]` query inputs.
        query_y: optional `[T, Q, ...]` query targets (the model's `y`).
    """
    sx, sy, qx = support_x.shape, support_y.shape, query_x.shape
    if len(sx) < 3 or len(qx) < 3:
        raise ValueError(
            "`support_x` and `query_x` must have shape [tasks, examples, *features] (rank >= 3). "
            f"Received: support_x.shape={tuple(sx)}, query_x.shape={tuple(qx)}. "
            "Add the task axis (x[None]) for a single task, or a feature axis (x[..., None])."
        )
    if tuple(sx[2:]) != tuple(qx[2:]):
        raise ValueError(
            "`query_x` must have the same feature shape as `support_x`. Received: "
            f"support_x.shape={tuple(sx)} (features {tuple(sx[2:])}), query_x.shape={tuple(qx)} "
            f"(features {tuple(qx[2:])})."
        )
    if (
        len(sy) < 2
        or (sx[0] is not None and sy[0] is not None and sx[0] != sy[0])
        or (sx[1] is not None and sy[1] is not None and sx[1] != sy[1])
    ):
        raise ValueError(
            "`support_y` must have shape [tasks, shots, ...] matching support_x's first two axes. "
            f"Received: support_x.shape={tuple(sx)}, support_y.shape={tuple(sy)}"
        )
    if query_y is not None:
        qy = query_y.shape
        if len(qy) < 2 or (qx[1] is not None and qy[1] is not None and qx[1] != qy[1]):
            raise ValueError(
                "`y` (query targets) must have shape [tasks, queries, ...] matching query_x's "
                f"first two axes. Received: query_x.shape={tuple(qx)}, y.shape={tuple(qy)}"
            )


def merge_tasks(t):
    """`[T, N, ...]` -> `[T * N, ...]`: the tasks of a meta-batch as one batch."""
    return ops.reshape(t, (-1,) + tuple(t.shape[2:]))


def check_stacked_meta_batches(data, steps_per_batch):
    """`data` holding `steps_per_batch` meta-batches on a leading axis, lists made tuples."""
    data = tuple(data) if isinstance(data, list) else data
    leading = tf.nest.flatten(data)[0]
    if leading.shape[0] is not None and leading.shape[0] != steps_per_batch:
        raise ValueError(
            f"`steps_per_batch={steps_per_batch}` needs that many meta-batches stacked "
            f"on a leading axis (dataset.batch({steps_per_batch}, drop_remainder=True)). "
            f"Received: leading axis of size {leading.shape[0]}"
        )
    return data


def as_tensor(a, keep_float64=False):
    """A tensor of `a`; NumPy float64 becomes float32 unless the model computes in float64."""
    if tf.is_tensor(a):
        return a
    a = np.asarray(a)
    return ops.convert_to_tensor(a.astype("float32") if a.dtype == np.float64 and not keep_float64 else a)


def one_task_support(support_x, support_y, keep_float64=False):
    """Checks one task's support set (finite, same first axis) and returns it as tensors."""
    if not tf.is_tensor(support_x):
        validation.check_finite(support_x, "support_x")
    if not tf.is_tensor(support_y):
        validation.check_finite(support_y, "support_y")
    support_x, support_y = as_tensor(support_x, keep_float64), as_tensor(support_y, keep_float64)
    if len(support_x.shape) < 2 or support_x.shape[0] != support_y.shape[0]:
        raise ValueError(
            "`support_x` and `support_y` must be one task's examples with the same first "
            f"axis. Received: support_x.shape={tuple(support_x.shape)}, "
            f"support_y.shape={tuple(support_y.shape)}"
        )
    return support_x, support_y
