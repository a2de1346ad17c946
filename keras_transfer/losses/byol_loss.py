"""BYOL's symmetric normalised mean squared error (Grill et al., 2020).

For the online predictions p1, p2 and the target projections z1', z2' of the two views,

    L = ||p1/|p1| - z2'/|z2'|||^2 + ||p2/|p2| - z1'/|z1'|||^2
      = (2 - 2 cos(p1, z2')) + (2 - 2 cos(p2, z1')),

averaged over the batch (the official code sums the two views' terms), with no gradient
to the targets. This is `4 + 4 * simsiam_loss(p1, p2, z1', z2')`: one computation
(`keras_transfer.losses.simsiam_loss`) serves both, and the two losses give the same
gradients up to a factor 4.
"""

import keras

from keras_transfer.losses.simsiam_loss import simsiam_terms
from keras_transfer.losses.simsiam_loss import split_stacked_views


def byol_terms(p1, p2, z1, z2):
    """Per-example `(2 - 2 cos(p1, z2)) + (2 - 2 cos(p2, z1))`, shape `(N,)` (see `byol_loss`)."""
    return 4.0 + 4.0 * simsiam_terms(p1, p2, z1, z2)


def byol_loss(p1, p2, z1, z2):
    """BYOL's loss: the normalised MSE of each view's prediction to the other view's target, summed.

    Args:
        p1: `(N, D)` online predictions of the first views.
        p2: `(N, D)` online predictions of the second views.
        z1: `(N, D)` target projections of the first views (the targets of `p2`);
            no gradient reaches them.
        z2: `(N, D)` target projections of the second views (the targets of `p1`).

    Returns:
        Scalar float32 (float64 for float64 inputs) in [0, 8]:
        `mean(2 - 2 cos(p1, z2) + 2 - 2 cos(p2, z1))`, which is `4 + 4 * simsiam_loss`.

    Raises:
        ValueError: if the four tensors are not 2-D with one shape.

    Reference:
        Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
        Learning", NeurIPS 2020.

    Example:

    >>> z = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> float(keras_transfer.losses.byol_loss(z, z, z, z))  # predictions along their targets
    0.0
    >>> float(keras_transfer.losses.byol_loss(z, z, -z, -z))  # opposite: 4 per view
    8.0
    """
    return keras.ops.mean(byol_terms(p1, p2, z1, z2))


@keras.saving.register_keras_serializable(package="keras_transfer")
class BYOLLoss(keras.losses.Loss):
    """`byol_loss` as a `keras.losses.Loss`.

    `y_pred` stacks the online predictions `(p1, p2)` and `y_true` the target
    projections `(z1, z2)` of the two views on axis 1, shapes `(batch, 2, dim)`; each
    view's prediction is compared with the OTHER view's target, which receives no
    gradient. `sample_weight` weights examples.

    Args:
        reduction: as in `keras.losses.Loss`, over the examples.
        name: the loss name.
        dtype: as in `keras.losses.Loss`; defaults to float32 so the loss stays
            float32 under `mixed_float16`.

    Raises:
        ValueError: when called, if `y_true` or `y_pred` is not `(batch, 2, dim)`.

    Reference:
        Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
        Learning", NeurIPS 2020.

    Example:

    >>> z = np.stack([np.eye(2, dtype="float32")] * 2, axis=1)  # (2, 2, 2)
    >>> float(keras_transfer.losses.BYOLLoss()(z, -z))
    8.0
    """

    def __init__(self, reduction="sum_over_batch_size", name="byol_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    def call(self, y_true, y_pred):
        return byol_terms(*split_stacked_views(y_true, y_pred))
