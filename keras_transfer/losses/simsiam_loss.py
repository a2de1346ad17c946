"""SimSiam's symmetric negative cosine similarity with a stop-gradient (Chen & He, 2021).

For predictions p1, p2 (the predictor's outputs for the two views) and projections z1, z2,

    D(p, z) = -cos(p, stopgrad(z)),    L = D(p1, z2) / 2 + D(p2, z1) / 2,

averaged over the batch. The stop-gradient is what keeps SimSiam from collapsing: no
gradient reaches z, only p. BYOL's normalised MSE `||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)`
is the same up to an affine map (`keras_transfer.losses.byol_loss`). Written by hand:
neither Keras, keras-hub nor keras-cv ship it.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.ops.numerics import l2_normalize


def _check_shapes(named):
    shapes = {name: tuple(t.shape) for name, t in named.items()}
    received = ", ".join(f"{name}.shape={shape}" for name, shape in shapes.items())
    if any(len(shape) != 2 for shape in shapes.values()):
        raise ValueError(f"{', '.join(f'`{n}`' for n in named)} must be 2-D (batch, dim). Received: {received}")
    known = {shape for shape in shapes.values() if None not in shape}
    if len(known) > 1:
        raise ValueError(
            f"{', '.join(f'`{n}`' for n in named)} must have the same shape (one row per example). Received: {received}"
        )


def negative_cosine_similarity(p, z):
    """Per-row `D(p, z) = -cos(p, stopgrad(z))`: no gradient reaches `z`.

    Args:
        p: `(N, D)` predictions (any float dtype).
        z: `(N, D)` targets of the same examples.

    Returns:
        `(N,)` float32 (float64 for float64 inputs), in [-1, 1].

    Raises:
        ValueError: if `p` and `z` are not 2-D with the same shape.
    """
    p, z = ops.convert_to_tensor(p), ops.convert_to_tensor(z)
    _check_shapes({"p": p, "z": z})
    dtype = compute_dtype(p)
    p = l2_normalize(ops.cast(p, dtype))
    z = l2_normalize(ops.cast(tf.stop_gradient(z), dtype))
    return -ops.sum(p * z, axis=-1)


def simsiam_terms(p1, p2, z1, z2):
    """Per-example `D(p1, z2) / 2 + D(p2, z1) / 2`, shape `(N,)` (see `simsiam_loss`)."""
    p1, p2, z1, z2 = (ops.convert_to_tensor(t) for t in (p1, p2, z1, z2))
    _check_shapes({"p1": p1, "p2": p2, "z1": z1, "z2": z2})
    return 0.5 * negative_cosine_similarity(p1, z2) + 0.5 * negative_cosine_similarity(p2, z1)


def simsiam_loss(p1, p2, z1, z2):
    """SimSiam's loss: `D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2`, mean over the batch.

    `D(p, z) = -cos(p, z)`; gradients reach the predictions only. BYOL's loss is
    `4 + 4 * simsiam_loss` (`keras_transfer.losses.byol_loss`).

    Args:
        p1: `(N, D)` predictions `h(z1)` of the first views.
        p2: `(N, D)` predictions of the second views.
        z1: `(N, D)` projections of the first views (the targets of `p2`).
        z2: `(N, D)` projections of the second views (the targets of `p1`).

    Returns:
        Scalar float32 (float64 for float64 inputs) in [-1, 1]; -1 when every
        prediction points along its target.

    Raises:
        ValueError: if the four tensors are not 2-D with one shape.

    Reference:
        Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

    Example:

    >>> z = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> float(keras_transfer.losses.simsiam_loss(z, z, z, z))  # predictions along their targets
    -1.0
    """
    return ops.mean(simsiam_terms(p1, p2, z1, z2))


def split_stacked_views(y_true, y_pred):
    """`(p1, p2, z1, z2)` from `y_pred = stack([p1, p2], 1)` and `y_true = stack([z1, z2], 1)`."""
    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    for name, value in (("y_true", y_true), ("y_pred", y_pred)):
        if len(value.shape) != 3 or value.shape[1] != 2:
            raise ValueError(
                f"`{name}` must have shape (batch, 2, dim): the two views stacked on axis 1 (predictions in "
                f"`y_pred`, projections in `y_true`). Received: {name}.shape={tuple(value.shape)}"
            )
    return y_pred[:, 0], y_pred[:, 1], y_true[:, 0], y_true[:, 1]


@keras.saving.register_keras_serializable(package="keras_transfer")
class SimSiamLoss(keras.losses.Loss):
    """`simsiam_loss` as a `keras.losses.Loss`.

    `y_pred` stacks the predictions `(p1, p2)` and `y_true` the projections `(z1, z2)`
    of the two views on axis 1, shapes `(batch, 2, dim)`; each view's prediction is
    compared with the OTHER view's projection, which receives no gradient. The
    per-example loss is `D(p1, z2) / 2 + D(p2, z1) / 2`, so `sample_weight` weights
    examples.

    Args:
        reduction: as in `keras.losses.Loss`, over the examples.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; defaults to float32 so the loss stays
            float32 under `mixed_float16`.

    Raises:
        ValueError: when called, if `y_true` or `y_pred` is not `(batch, 2, dim)`.

    Reference:
        Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021.

    Example:

    >>> z = np.stack([np.eye(2, dtype="float32")] * 2, axis=1)  # (2, 2, 2)
    >>> float(keras_transfer.losses.SimSiamLoss()(z, z))
    -1.0
    """

    def __init__(self, reduction="sum_over_batch_size", name="simsiam_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    def call(self, y_true, y_pred):
        return simsiam_terms(*split_stacked_views(y_true, y_pred))
