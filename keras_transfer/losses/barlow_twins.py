"""Barlow Twins' redundancy-reduction loss (Zbontar et al., 2021).

The two views' embeddings are standardised feature by feature over the batch (the
official code's `BatchNorm1d(affine=False)`: biased variance, epsilon 1e-5), and their
cross-correlation matrix `C = z1_n^T z2_n / N` (D x D) is pushed to the identity:

    L = sum_i (1 - C_ii)^2 + redundancy_weight * sum_{i != j} C_ij^2

The diagonal makes the embedding invariant to the augmentations; the off-diagonal
decorrelates its features (no negatives, no asymmetric networks). Written by hand:
neither Keras, keras-hub nor keras-cv ship it.
"""

from keras import ops

from keras_transfer.losses.nt_xent import check_view_pair
from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils.validation import check_non_negative_float

_EPSILON = 1e-5  # BatchNorm1d's, as in the official code


def standardize_features(z, epsilon=_EPSILON):
    """`(z - mean) / sqrt(var + epsilon)` per feature over the batch (biased variance)."""
    mean = ops.mean(z, axis=0, keepdims=True)
    variance = ops.mean(ops.square(z - mean), axis=0, keepdims=True)
    return (z - mean) / ops.sqrt(variance + epsilon)


def barlow_twins_terms(z1, z2):
    """`(on_diagonal, off_diagonal)`: `sum_i (1 - C_ii)^2` and `sum_{i != j} C_ij^2` of the
    views' cross-correlation matrix over the batch (inputs already gathered, float)."""
    n = ops.cast(ops.shape(z1)[0], z1.dtype)
    c = ops.matmul(ops.transpose(standardize_features(z1)), standardize_features(z2)) / n
    diagonal = ops.diagonal(c)
    on_diagonal = ops.sum(ops.square(1.0 - diagonal))
    off_diagonal = ops.sum(ops.square(c)) - ops.sum(ops.square(diagonal))
    return on_diagonal, off_diagonal


def barlow_twins_loss(z1, z2, redundancy_weight=5e-3):
    """Barlow Twins' loss of a batch of view pairs.

    Args:
        z1: `(N, D)` embeddings (projections) of the first views.
        z2: `(N, D)` embeddings of the second views of the same examples.
        redundancy_weight: the weight lambda of the off-diagonal term (the paper:
            5e-3 for D = 8192; about 1 / D keeps the two terms balanced).

    Returns:
        Scalar float32 (float64 for float64 inputs):
        `sum_i (1 - C_ii)^2 + redundancy_weight * sum_{i != j} C_ij^2`.

    Raises:
        ValueError: if the embeddings are not 2-D with the same shape, hold fewer than
            2 rows, or `redundancy_weight` is negative.

    Reference:
        Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning
        via Redundancy Reduction", ICML 2021.

    Example:

    >>> z = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], "float32")
    >>> round(float(keras_transfer.losses.barlow_twins_loss(z, z)), 4)  # C = I up to the epsilon
    0.0
    """
    redundancy_weight = check_non_negative_float("redundancy_weight", redundancy_weight)
    z1, z2 = check_view_pair(z1, z2)
    dtype = compute_dtype(z1)
    on_diagonal, off_diagonal = barlow_twins_terms(ops.cast(z1, dtype), ops.cast(z2, dtype))
    return on_diagonal + redundancy_weight * off_diagonal
